"""Exponential backoff with full jitter: a tiny, pure, resettable sequence of delays."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``initial_s · 2^n``, capped at ``max_s``, each drawn uniformly in [cap/2, cap].

    "Equal jitter": never less than half the nominal delay (so a storm of
    reconnects is always damped), never more than the cap. :meth:`reset` starts
    over; callers reset only after a session has been healthy for a while.
    """

    __slots__ = ("_attempt", "_rng", "initial_s", "max_s")

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self._attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    @property
    def attempt(self) -> int:
        """How many delays were drawn since the last reset."""
        return self._attempt

    def nominal(self) -> float:
        """The cap of the next delay, before jitter."""
        return float(min(self.max_s, self.initial_s * 2.0 ** min(self._attempt, 62)))

    def next(self) -> float:
        """The next delay in seconds."""
        cap = self.nominal()
        self._attempt += 1
        return self._rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        self._attempt = 0
