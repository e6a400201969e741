"""The configuration file's tables as types, and their errors in this package's words.

Each TOML table of :mod:`recorder.config` is a :class:`Table` (a strict
:class:`msgspec.Struct`: unknown keys are errors); bounds are :func:`finite`
annotations. msgspec's own messages (``Expected `int` >= 1 - at `$.recorder.batch_max_rows```)
become ``[recorder] batch_max_rows must be at least 1 (got 0)``
(:func:`in_our_words`), the words :mod:`recorder.config` uses for what types
cannot say (:class:`Invalid`).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

import msgspec


def finite(ge: float) -> msgspec.Meta:
    """At least ``ge`` and finite: ``ge`` refuses nan and -inf, the largest float refuses inf."""
    return msgspec.Meta(ge=ge, le=sys.float_info.max)


class Table(msgspec.Struct, forbid_unknown_fields=True):
    """A TOML table whose unknown keys are errors: a misspelt key must not pass silently."""


class Invalid(Exception):
    """``[section] key problem``: a value its type allows but its meaning does not."""


_KINDS: Final = {"str": "a string", "bool": "a boolean", "int": "an integer",
                 "float": "a number", "array": "an array", "object": "a table"}  # fmt: skip


def in_our_words(message: str, document: Mapping[str, Any]) -> str:
    """msgspec's ``Expected `int` >= 1 - at `$.recorder.batch_max_rows``` in this package's words.

    msgspec says what it expected and where; the value shown is looked up in ``document``.
    A message of a shape not foreseen here is passed on as it is.
    """
    problem, at, where = message.rpartition(" - at `$")
    if not at:
        problem, where = message, "`"
    located = re.fullmatch(r"(?:\.(\w+))?(?:\.(\w+))?(?:\[(\d+)\])?`", where)
    if located is None:
        return message
    section, key, index = located.groups()
    if unknown := re.fullmatch(r"Object contains unknown field `(.*)`", problem):
        name = unknown[1]
        return f"unknown key [{section}] {name}" if section else f"unknown section [{name}]"
    if key is None:
        return f"[{section}] must be a table"
    if key == "accounts":  # words of its own, for the array and for its entries
        if index is None:
            return "[studio] accounts must be a non-empty array of strings"
        entry = document[section][key][int(index)]
        return f"[studio] accounts entries must be non-empty strings (got {entry!r})"
    if wrong := re.fullmatch(r"Expected `(\w+)[^`]*`, got `(\w+)`", problem):
        expected, got = (_KINDS.get(kind, kind) for kind in wrong.groups())
        what = key if index is None else f"{key} entries"
        return f"[{section}] {what} must be {expected} (got {got})"
    value = document[section][key]
    if isinstance(value, float) and not math.isfinite(value):
        return f"[{section}] {key} must be finite (got {value})"
    if below := re.fullmatch(r"Expected `(\w+)` >= (\S+)", problem):
        shown = f"{value:g}" if below[1] == "float" else value
        return f"[{section}] {key} must be at least {float(below[2]):g} (got {shown})"
    return message
