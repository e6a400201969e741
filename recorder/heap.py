"""The garbage collector and a long-running recorder process.

A process's start-up (imports, SQLAlchemy's metadata, the configuration) leaves some
60,000-90,000 objects that live as long as it does. Every full collection walks them
all again, a pause of tens of milliseconds in the middle of a burst, for nothing.
:func:`freeze_startup_heap` moves them out of the collector's sight once start-up is
done; what is allocated afterwards is collected as before.

Only a process that is ours from start to end may do that: the console scripts and the
writer process say so with :func:`claim_process`. A caller running a command inside its
own process (a test, an embedding program) keeps its heap as it is.
"""

from __future__ import annotations

import gc

_claimed = False


def claim_process() -> None:
    """Say that this interpreter runs one of our commands from start to end."""
    global _claimed
    _claimed = True


def freeze_startup_heap() -> bool:
    """In a claimed process: collect start-up's garbage, then freeze what survives
    (:func:`gc.freeze`), so later collections no longer walk it. Call once, when the
    process is set up and about to do its work. Returns whether it froze."""
    if not _claimed:
        return False
    gc.collect()
    gc.freeze()
    return True
