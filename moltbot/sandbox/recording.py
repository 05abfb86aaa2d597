"""What every emulator keeps: a thread-safe journal of requests and a queue of injected faults."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

AcceptedT = TypeVar("AcceptedT")
RejectedT = TypeVar("RejectedT")
FaultT = TypeVar("FaultT")


class RequestJournal(Generic[AcceptedT, RejectedT, FaultT]):
    """Accepted and rejected requests, and faults that each answer the next N requests.

    The server thread records while the test thread reads, so every accessor returns a snapshot
    taken under one lock. Faults queue up in order: a second one applies once the first is used up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted: list[AcceptedT] = []
        self._rejected: list[RejectedT] = []
        self._faults: deque[list] = deque()  # [fault, remaining uses]

    @property
    def accepted(self) -> list[AcceptedT]:
        """Requests the emulator answered with success, oldest first."""
        with self._lock:
            return list(self._accepted)

    @property
    def rejected(self) -> list[RejectedT]:
        """Requests the emulator refused (bad input or an injected fault), oldest first."""
        with self._lock:
            return list(self._rejected)

    @property
    def attempts(self) -> int:
        """Every request seen, accepted or not."""
        with self._lock:
            return len(self._accepted) + len(self._rejected)

    @property
    def pending_faults(self) -> list[tuple[FaultT, int]]:
        """Faults not yet used up with how many uses each has left, in the order they apply."""
        with self._lock:
            return [(fault, remaining) for fault, remaining in self._faults]

    def add_fault(self, fault: FaultT, count: int) -> None:
        """Make the next `count` requests take `fault` instead of their normal answer.

        Raises:
            ValueError: `count` is below 1.
        """
        if count < 1:
            raise ValueError(f"fault count must be at least 1, got {count}")
        with self._lock:
            self._faults.append([fault, count])

    def take_fault(self) -> FaultT | None:
        """The fault that applies to the request being answered now, using up one of its uses."""
        with self._lock:
            if not self._faults:
                return None
            entry = self._faults[0]
            entry[1] -= 1
            if entry[1] == 0:
                self._faults.popleft()
            return entry[0]

    def record_accepted(self, request: AcceptedT) -> None:
        """Journal a request answered with success."""
        with self._lock:
            self._accepted.append(request)

    def record_rejected(self, request: RejectedT) -> None:
        """Journal a request that was refused."""
        with self._lock:
            self._rejected.append(request)

    def clear_requests(self) -> None:
        """Forget accepted and rejected requests; pending faults stay."""
        with self._lock:
            self._accepted.clear()
            self._rejected.clear()

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def clear(self) -> None:
        """Forget requests and faults."""
        with self._lock:
            self._accepted.clear()
            self._rejected.clear()
            self._faults.clear()
