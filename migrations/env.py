"""Alembic environment, close to alembic's generic template.

Tests and ``studio-recorder db`` pass an open connection in
``config.attributes["connection"]``; the ``alembic`` command line takes the URL
from ``-x db=URL``, the recorder config (``STUDIO_RECORDER_CONFIG``) or
``sqlalchemy.url`` in alembic.ini.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from recorder.config import CONFIG_ENV, load_config
from recorder.schema import metadata
from recorder.store import open_engine

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("db")
    if url:
        return url
    if os.environ.get(CONFIG_ENV):
        return load_config(os.environ[CONFIG_ENV]).store.url
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: pass -x db=URL or set STUDIO_RECORDER_CONFIG")
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = open_engine(_url())
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
