"""Single flight: a value computed at most once at a time per key, shared by everyone who asks.

Both the compiled passes (explain.passes: one trace per pass) and the model registry (one load per
model) need it: callers of a key whose computation is under way wait for it and get its value or
its error, and nobody starts a second one.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable


class SingleFlight:
    """`lock` guards the caller's own table too: `lookup` and `publish` run under it, so a value is
    published in the same step as its flight ends and no caller can miss both."""

    def __init__(self):
        self.lock = threading.Lock()
        self._flights: dict[object, Future] = {}

    def get(self, key, compute: Callable[[], object], lookup: Callable[[], object | None],
            publish: Callable[[object], None]):
        """lookup() if it has the value, else the value of the one compute() under way or started now
        (its error is raised to every waiter, and the next call tries again)."""
        with self.lock:
            value = lookup()
            if value is not None:
                return value
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = Future()
        if not leader:
            return flight.result()
        try:
            value = compute()
        except BaseException as error:
            with self.lock:
                del self._flights[key]
            flight.set_exception(error)
            raise
        with self.lock:
            del self._flights[key]
            publish(value)
        flight.set_result(value)
        return value
