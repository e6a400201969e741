"""``python -m queries`` and the ``studio-query`` console script (see
:func:`recorder.interrupts.console`)."""

from __future__ import annotations

from recorder.interrupts import console


def main() -> None:
    console("queries.cli", "studio-query")


if __name__ == "__main__":
    main()
