"""The garbage collector and a long-running recorder process.

A process's start-up (imports, SQLAlchemy's metadata, the configuration) leaves some
60,000-90,000 objects that live as long as it does. Every full collection walks them
all again, a pause of tens of milliseconds in the middle of a burst, for nothing.
:func:`freeze_startup_heap` moves them out of the collector's sight once start-up is
done; what is allocated afterwards is collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect start-up's garbage, then freeze what survives (:func:`gc.freeze`): later
    collections no longer walk it. Call once, when the process is set up and about to
    do its work."""
    gc.collect()
    gc.freeze()
