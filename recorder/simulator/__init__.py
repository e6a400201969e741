"""A local look-alike of Clear Street Studio's Activity WebSocket channel and token endpoint.

Used by the recorder's tests and by the `demo` command; see `Simulator` and the README's
protocol section.
"""

from recorder.simulator.config import (
    DEFAULT_AUDIENCE,
    WS_PATH,
    SimConfig,
    SimEndpoints,
    SubscribeSeen,
)
from recorder.simulator.flow import ActivityFlow, Record
from recorder.simulator.server import Simulator, run_simulator

__all__ = [
    "DEFAULT_AUDIENCE",
    "WS_PATH",
    "ActivityFlow",
    "Record",
    "SimConfig",
    "SimEndpoints",
    "Simulator",
    "SubscribeSeen",
    "run_simulator",
]
