"""What the tests share, one definition each, one module per concept.

* :mod:`.cli` — ``studio-recorder``/``studio-query`` in-process through their ``main()``, or as
  real processes; the one-line-error check.
* :mod:`.config` — the client secret the simulator accepts, recorder configurations (TOML files
  and parsed settings).
* :mod:`.frames` — frames as the recorder stores them.
* :mod:`.simday` — a recorded trading day with injected faults, every number known.
* :mod:`.stores` — migrated stores and what they hold.
* :mod:`.recording` — a simulator and an in-process recorder.
* :mod:`.processes` — ``studio-recorder run`` as a child process, free ports, HTTP probes.
* :mod:`.faults` — faults injected for real: a locked SQLite file, a cut TCP link, a full disk,
  an immutable file.
* :mod:`.waiting` — polling a condition under a deadline.
"""

from pathlib import Path

#: The repository (the README, the migrations, the benchmarks).
ROOT = Path(__file__).resolve().parents[2]
