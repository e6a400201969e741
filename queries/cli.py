"""``studio-query``: exports and analytics over the recorder's store."""

from __future__ import annotations

import sys

import click

from . import __version__

PROG = "studio-query"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG)
def cli() -> None:
    """Export trading days and audit the recorder's store."""


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name=PROG)
    except KeyboardInterrupt:
        sys.exit(130)
