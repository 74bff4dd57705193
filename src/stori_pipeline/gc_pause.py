"""Keeping the cyclic garbage collector out of the way of a long aggregation.

Summarizing a file of many accounts creates a container per (account, month) bucket that
lives until the end; CPython's collector walks every one of them again at each full
collection, and its young collections keep re-scanning the batches in flight. None of that
can free anything (the aggregation makes no reference cycles), yet at 50,000 accounts it was
a tenth of the run. :func:`collections_deferred` raises the thresholds while it is entered
and restores them after, so cyclic garbage of other code is still collected, only later.

Full collections are deferred always; young ones only when asked (``young=True``): a reader
with nothing else running (``summarize``) makes no garbage worth collecting early, while an
ingest's AWS clients make cyclic garbage per request, which young collections should free.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collections_deferred"]

# A young collection per this many new containers (CPython's default: 700), and no full one.
_YOUNG_THRESHOLD = 100_000
_OLD_THRESHOLD = 1 << 30


class _State:
    """How many callers are inside, and the thresholds to restore when the last one leaves."""

    depth = 0
    saved: tuple[int, int, int] = (700, 10, 10)
    lock = threading.Lock()  # threads (asyncio.to_thread, library users) may enter too


@contextmanager
def collections_deferred(*, young: bool = False) -> Iterator[None]:
    """Raise the collector's thresholds for the block; restore them when the last block ends.

    Nests and interleaves (concurrent tasks or threads may each enter it): only the outermost
    entry saves the thresholds and only the last exit restores them; the outermost entry's
    ``young`` holds for all of them.
    """
    with _State.lock:
        if _State.depth == 0:
            _State.saved = gc.get_threshold()
            first, middle, _old = _State.saved
            young_threshold = max(first, _YOUNG_THRESHOLD) if young else first
            gc.set_threshold(young_threshold, middle, _OLD_THRESHOLD)
        _State.depth += 1
    try:
        yield
    finally:
        with _State.lock:
            _State.depth -= 1
            if _State.depth == 0:
                gc.set_threshold(*_State.saved)
