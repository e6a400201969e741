"""studio-recorder: records Clear Street Studio's Activity WebSocket channel.

The recorder writes every frame, exactly as received, to an append-only,
hash-chained store (SQLite by default, PostgreSQL in production).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:  # the one place the version is written is pyproject.toml
    __version__ = version("studio-recorder")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from typing import TYPE_CHECKING

from .lazy import lazy_attributes

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load on first use
    from .chain import GENESIS_HASH, canonical_bytes, next_hash, verify_chain
    from .config import Settings, load_config
    from .envelope import Envelope, decode_raw, encode_raw, parse_envelope
    from .errors import AuthError, ConfigError, RecorderError, StoreError
    from .tradingday import trading_day

#: Public name → the module defining it. Loaded on first use (PEP 562), so that
#: ``import recorder`` (and every console script) starts fast and an early Ctrl-C is cheap.
_LAZY = {
    "GENESIS_HASH": "chain",
    "canonical_bytes": "chain",
    "next_hash": "chain",
    "verify_chain": "chain",
    "Settings": "config",
    "load_config": "config",
    "Envelope": "envelope",
    "decode_raw": "envelope",
    "encode_raw": "envelope",
    "parse_envelope": "envelope",
    "AuthError": "errors",
    "ConfigError": "errors",
    "RecorderError": "errors",
    "StoreError": "errors",
    "trading_day": "tradingday",
}


__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "GENESIS_HASH",
    "AuthError",
    "ConfigError",
    "Envelope",
    "RecorderError",
    "Settings",
    "StoreError",
    "__version__",
    "canonical_bytes",
    "decode_raw",
    "encode_raw",
    "load_config",
    "next_hash",
    "parse_envelope",
    "trading_day",
    "verify_chain",
]
