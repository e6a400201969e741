"""Facts about a store kept in the store (``store_meta``), each written once: its trading-day
time zone here (the store id is made by the migration, see :mod:`recorder.attestation`).

The zone decides which calendar date every frame's ``trading_day`` is: a store recorded in
New York time read as London days would put evening frames on the wrong day. So the zone
is recorded the first time it is known (``db upgrade --config``, or the first ``run``) and
every later reader or writer that names another is refused.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, insert, select

from .errors import ConfigError
from .schema import TRADING_DAY_TIMEZONE, store_meta


def read(connection: Connection, name: str) -> str | None:
    """The value recorded under ``name``, None when there is none."""
    value = connection.execute(
        select(store_meta.c.value).where(store_meta.c.name == name)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def disagreement(recorded: str, given: str, where: str) -> str:
    """The one line refusing a zone that is not the store's."""
    return (
        f"{where} says trading-day time zone {given}, but the store was recorded in {recorded}: "
        "its trading days are dates in that zone"
    )


def claim_zone(engine: Engine, zone: str, where: str) -> bool:
    """Record ``zone`` as the store's trading-day zone unless one is recorded already (True
    when this call recorded it); ConfigError when the recorded one is another."""
    with engine.begin() as connection:
        recorded = read(connection, TRADING_DAY_TIMEZONE)
        if recorded is None:
            connection.execute(insert(store_meta).values(name=TRADING_DAY_TIMEZONE, value=zone))
            return True
    if recorded != zone:
        raise ConfigError(disagreement(recorded, zone, where))
    return False
