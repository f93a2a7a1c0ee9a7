"""How late the hub's event loop wakes up: its stalls, while spawners run on it."""

from __future__ import annotations

import asyncio
import contextlib
import os


class LoopLateness:
    """A ticker on the hub's loop: sleeps `period` seconds and records how late each wake-up was.

    Lateness is how long the loop was busy with other callbacks (computing, or blocked in a call that
    should not block): a stall, whatever the wall time of the whole run. `max` leaves out the time this
    thread spent waiting for a CPU while other processes ran (Linux's per-thread schedstat), which is the
    machine's load, not the hub's; `max_raw` keeps it.
    """

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.max = 0.0
        self.max_raw = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        self._schedstat: int | None = None

    def _waited(self) -> float:
        """Seconds this thread has waited for a CPU so far (0 where the kernel does not say)."""
        if self._schedstat is None:
            return 0.0
        fields = os.pread(self._schedstat, 128, 0).split()
        return int(fields[1]) / 1e9

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before, waited = loop.time(), self._waited()
            await asyncio.sleep(self.period)
            late = loop.time() - before - self.period
            self.max_raw = max(self.max_raw, late)
            self.max = max(self.max, late - (self._waited() - waited))
            self.ticks += 1

    async def __aenter__(self) -> LoopLateness:
        with contextlib.suppress(OSError):
            self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None
