"""What the dispatcher tests share: dispatch passes run at the same moment in threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from moltbot.webhooks.dispatcher import DispatchCounts, Dispatcher
from tests.e2e.servers import HANG_GUARD_SECONDS


def passes_at_once(dispatchers: Sequence[Dispatcher]) -> list[DispatchCounts]:
    """Each dispatcher's `dispatch_pending` in a thread of its own, all released together; the
    counts of the passes, in the order they ended."""
    start = threading.Barrier(len(dispatchers))
    results: list[DispatchCounts] = []

    def work(which: Dispatcher) -> None:
        start.wait()
        results.append(which.dispatch_pending())

    threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_SECONDS)
    return results
