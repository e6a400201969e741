"""``python -m recorder`` and the ``studio-recorder`` console script (see
:func:`recorder.interrupts.console`)."""

from __future__ import annotations

from recorder.interrupts import console


def main() -> None:
    console("recorder.cli", "studio-recorder")


if __name__ == "__main__":
    main()
