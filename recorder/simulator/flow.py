"""Realistic, reproducible account activity for the simulator (pure and synchronous).

`ActivityFlow` plays a small trading desk for one account: it places orders on a few symbols,
fills them in one or more executions, occasionally cancels one, and reports buying power. Each
step yields the payload records Studio would send (`order-update`, `trade-notice`,
`position-update`, `buying-power-update`, `locate-inventory-update`), with field names and shapes
from the protocol ("Order" and "Fill" of Clear Street's Activity channel reference; see the
README's protocol section).

Quantities and prices are computed with `decimal.Decimal` and rendered with `str()`, so they never
carry float artefacts. `average_price` / `average_cost` are JSON numbers upstream; they are
quantized to 4 places before conversion, and a float built from such a decimal prints back as the
same digits (shortest repr), so the JSON text stays clean too.

No I/O and no clock here: the caller passes `now_ms`, and all randomness comes from one
`random.Random` seeded from (seed, account id), so the same seed gives the same day.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["DEFAULT_SYMBOLS", "ActivityFlow", "Record", "signed_quantity"]

#: Starting mark price of each traded symbol, in cents (kept integral so prices are exact).
DEFAULT_SYMBOLS: Mapping[str, int] = {
    "AAPL": 18_950,
    "MSFT": 41_520,
    "NVDA": 12_110,
    "TSLA": 17_780,
    "SPY": 53_460,
}

# Probabilities of each kind of step; chosen so a typical minute shows every message type.
_BUYING_POWER_P = 0.04
_NEW_ORDER_P = 0.3
_CANCEL_P = 0.08
_MAX_WORKING_ORDERS = 3
_ORDER_SIZES = (10, 25, 50, 100, 200, 300, 500)
# Most orders carry no strategy object; some are routed by an algorithm (keyed by "type").
_STRATEGIES: tuple[dict[str, object] | None, ...] = (None, None, {"type": "sor"}, {"type": "vwap"})
_STARTING_CASH = Decimal("10000000.00")
_LOCATE_POOL = Decimal(50_000)
_AVERAGE_PLACES = Decimal("0.0001")
_CENTS = Decimal("0.01")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Record:
    """One sequenced payload: `type` is `payload.type`, `data` becomes `payload.data`."""

    type: str
    data: dict[str, object]


def signed_quantity(side: str, quantity: Decimal) -> Decimal:
    """Position change caused by a fill: buys add, `sell` and `sell-short` subtract."""
    return quantity if side == "buy" else -quantity


def _price(cents: int) -> Decimal:
    # scaleb keeps the coefficient, so 18900 cents renders as "189.00", not "189".
    return Decimal(cents).scaleb(-2)


def _json_number(value: Decimal) -> float:
    return float(value.quantize(_AVERAGE_PLACES, rounding=ROUND_HALF_EVEN))


@dataclass
class _Order:
    order_id: str
    reference_id: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    limit_cents: int | None
    created_at: int
    strategy: dict[str, object] | None
    version: int = 1
    filled: Decimal = _ZERO
    notional: Decimal = _ZERO  # sum of quantity * price over the fills, for average_price

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled


@dataclass
class _Position:
    quantity: Decimal = _ZERO
    average_cost: Decimal = _ZERO

    def apply(self, delta: Decimal, price: Decimal) -> None:
        """Apply a signed fill with the usual average-cost rules (flat, add, reduce, flip)."""
        before = self.quantity
        after = before + delta
        if after == 0:
            self.average_cost = _ZERO
        elif before == 0 or (before > 0) != (after > 0):
            # Opened a new position, or flipped through zero: the new lot costs the fill price.
            self.average_cost = price
        elif abs(after) > abs(before):
            total = abs(before) * self.average_cost + abs(delta) * price
            self.average_cost = (total / abs(after)).quantize(_AVERAGE_PLACES, ROUND_HALF_EVEN)
        # Reducing an existing position keeps its average cost.
        self.quantity = after


@dataclass
class _Book:
    positions: dict[str, _Position] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    working: dict[str, _Order] = field(default_factory=dict)  # at most one per symbol
    cash: Decimal = _STARTING_CASH
    locates_used: dict[str, Decimal] = field(default_factory=dict)


class ActivityFlow:
    """Endless, seeded stream of one account's sequenced activity records."""

    def __init__(
        self,
        account_id: str,
        *,
        seed: int,
        account_number: str | None = None,
        symbols: Mapping[str, int] = DEFAULT_SYMBOLS,
    ) -> None:
        """Create the flow for `account_id`; `symbols` maps symbol → starting price in cents."""
        if not symbols:
            raise ValueError("ActivityFlow needs at least one symbol to trade")
        # A string seed is hashed deterministically (unlike hash()), so runs are reproducible.
        seed_text = f"studio-simulator/{seed}/{account_id}"
        self._rng = random.Random(seed_text)  # noqa: S311 - simulated trades, not secrets
        self.account_id = account_id
        self.account_number = account_number or f"SIM{account_id}"
        self._book = _Book(marks=dict(symbols))
        self._pending: deque[Record] = deque()
        self._next_order_id = self._rng.randrange(10_000_000, 90_000_000)
        self._next_trade_id = self._rng.randrange(10_000_000, 90_000_000)
        self._orders_placed = 0

    def next_record(self, now_ms: int) -> Record:
        """Return the next record; `now_ms` stamps `created_at`/`updated_at` of new steps.

        A fill produces three records at once (trade-notice, order-update, position-update);
        they are handed out one per call, so the caller's rate applies to records, not steps.
        """
        while not self._pending:
            self._step(now_ms)
        return self._pending.popleft()

    # -- steps ---------------------------------------------------------------------------

    def _step(self, now_ms: int) -> None:
        rng = self._rng
        book = self._book
        if rng.random() < _BUYING_POWER_P:
            self._emit_buying_power()
            return
        idle = [s for s in book.marks if s not in book.working]
        wants_new = rng.random() < _NEW_ORDER_P and len(book.working) < _MAX_WORKING_ORDERS
        if idle and (not book.working or wants_new):
            self._place(rng.choice(idle), now_ms)
            return
        order = book.working[rng.choice(sorted(book.working))]
        if rng.random() < _CANCEL_P:
            self._cancel(order, now_ms)
        else:
            self._fill(order, now_ms)

    def _place(self, symbol: str, now_ms: int) -> None:
        rng = self._rng
        position = self._position(symbol).quantity
        size = Decimal(rng.choice(_ORDER_SIZES))
        if position > 0:
            side = rng.choice(("buy", "sell"))
        elif position == 0:
            side = "buy" if rng.random() < 0.7 else "sell-short"
        else:
            side = "buy" if rng.random() < 0.6 else "sell-short"
        if side == "sell":
            # A plain sell never takes a long position below zero (that would be a short sale).
            size = min(size, position) if rng.random() < 0.6 else position
        mark = self._book.marks[symbol]
        if rng.random() < 0.8:
            order_type = "limit"
            offset = rng.randint(0, 10)
            limit_cents: int | None = mark + offset if side == "buy" else max(1, mark - offset)
        else:
            order_type, limit_cents = "market", None
        strategies: tuple[dict[str, object] | None, ...] = (
            None,
            None,
            {"type": "sor"},
            {"type": "vwap"},
        )
        strategy = rng.choice(strategies)
        self._orders_placed += 1
        order = _Order(
            order_id=str(self._next_order_id),
            reference_id=f"sim-{self.account_id}-{self._orders_placed}",
            symbol=symbol,
            side=side,
            order_type=order_type,
            quantity=size,
            limit_cents=limit_cents,
            created_at=now_ms,
            strategy=strategy,
        )
        self._next_order_id += 1
        self._book.working[symbol] = order
        if side == "sell-short":
            self._emit_locate(symbol, reserved=size)
        self._emit_order(order, now_ms, status="new", reason="place")

    def _fill(self, order: _Order, now_ms: int) -> None:
        rng = self._rng
        book = self._book
        remaining = int(order.remaining)
        quantity = Decimal(remaining if rng.random() < 0.4 else rng.randint(1, remaining))
        mark = max(1, book.marks[order.symbol] + rng.randint(-5, 5))
        book.marks[order.symbol] = mark
        cents = mark
        if order.limit_cents is not None:
            # A limit order never fills worse than its limit.
            is_buy = order.side == "buy"
            cents = min(mark, order.limit_cents) if is_buy else max(mark, order.limit_cents)
        price = _price(cents)
        order.filled += quantity
        order.notional += quantity * price
        order.version += 1
        position = self._position(order.symbol)
        delta = signed_quantity(order.side, quantity)
        position.apply(delta, price)
        book.cash -= delta * price
        if order.side == "sell-short":
            used = book.locates_used.get(order.symbol, _ZERO) + quantity
            book.locates_used[order.symbol] = used
        self._pending.append(
            Record(
                "trade-notice",
                {
                    "created_at": now_ms,
                    "account_id": self.account_id,
                    "account_number": self.account_number,
                    "trade_id": str(self._next_trade_id),
                    "order_id": order.order_id,
                    "symbol": order.symbol,
                    "side": order.side,
                    "quantity": str(quantity),
                    "price": str(price),
                    "running_position": str(position.quantity),
                },
            )
        )
        self._next_trade_id += 1
        done = order.remaining == 0
        status = "filled" if done else "partially-filled"
        self._emit_order(order, now_ms, status=status, reason="execution-report")
        self._pending.append(
            Record(
                "position-update",
                {
                    "account_id": self.account_id,
                    "account_number": self.account_number,
                    "symbol": order.symbol,
                    "quantity": str(position.quantity),
                    "average_cost": _json_number(position.average_cost),
                },
            )
        )
        if done:
            del book.working[order.symbol]

    def _cancel(self, order: _Order, now_ms: int) -> None:
        order.version += 1
        self._emit_order(order, now_ms, status="canceled", reason="cancel")
        del self._book.working[order.symbol]

    # -- records -------------------------------------------------------------------------

    def _position(self, symbol: str) -> _Position:
        return self._book.positions.setdefault(symbol, _Position())

    def _emit_order(self, order: _Order, now_ms: int, *, status: str, reason: str) -> None:
        closed = status in ("filled", "canceled")
        data: dict[str, object] = {
            "created_at": order.created_at,
            "updated_at": now_ms,
            "order_id": order.order_id,
            "reference_id": order.reference_id,
            "version": order.version,
            "account_id": self.account_id,
            "account_number": self.account_number,
            "state": "closed" if closed else "open",
            "status": status,
            "symbol": order.symbol,
            "order_type": order.order_type,
            "side": order.side,
            "quantity": str(order.quantity),
            "time_in_force": "day",
            "filled_quantity": str(order.filled),
            "order_update_reason": reason,
            "running_position": str(self._position(order.symbol).quantity),
        }
        if order.limit_cents is not None:
            data["price"] = str(_price(order.limit_cents))
        if order.filled > 0:
            data["average_price"] = _json_number(order.notional / order.filled)
        if order.strategy is not None:
            data["strategy"] = dict(order.strategy)
        self._pending.append(Record("order-update", data))

    def _emit_buying_power(self) -> None:
        buying_power = self._book.cash.quantize(_CENTS, ROUND_HALF_EVEN)
        self._pending.append(
            Record(
                "buying-power-update",
                {
                    # Shape not documented upstream; plausible fields, recorded raw anyway.
                    "account_id": self.account_id,
                    "account_number": self.account_number,
                    "buying_power": str(buying_power),
                },
            )
        )

    def _emit_locate(self, symbol: str, *, reserved: Decimal) -> None:
        used = self._book.locates_used.get(symbol, _ZERO)
        self._pending.append(
            Record(
                "locate-inventory-update",
                {
                    # Shape not documented upstream (a guess at these four fields).
                    "account_id": self.account_id,
                    "symbol": symbol,
                    "available": str(_LOCATE_POOL - used - reserved),
                    "reserved": str(reserved),
                    "used": str(used),
                },
            )
        )
