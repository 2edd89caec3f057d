"""How long the devices wait for the host during training: device idle time and input wait.

JAX dispatches a step asynchronously: while the devices compute step n, the host already fetches
batch n + 1 and dispatches step n + 1. The devices sit idle only when step n + 1 is dispatched
*after* step n has finished, i.e. when the input pipeline (or anything else on the host) is
slower than a step. ``DeviceIdleMeter`` measures exactly that gap: a watcher thread blocks on
each step's outputs and stamps when they are ready; step n + 1 then adds
``max(0, dispatched(n + 1) - finished(n))`` to the idle time and
``finished(n + 1) - max(dispatched(n + 1), finished(n))`` to the busy time.

Time the host spends on purpose between steps (validation, checkpoints) is not the input
pipeline's doing: ``pause()`` before such work makes the next step's gap uncounted.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any

import jax

_PAUSE = object()
_STOP = object()


class DeviceIdleMeter:
    """Accumulates device idle time and host input wait between ``take()`` calls.

    Use: ``with meter.waiting_for_input(): batch = next(batches)``, then dispatch the step and
    call ``meter.dispatched(step, outputs)`` right after; ``take(step)`` returns the sums since
    the last ``take`` once step ``step`` has finished.
    """

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._finished = threading.Condition()
        self._last_finished_step = -1
        self._previous_finish: float | None = None
        self._idle_s = 0.0
        self._busy_s = 0.0
        self._input_wait_s = 0.0
        self._thread = threading.Thread(target=self._watch, name="device-idle-meter", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def waiting_for_input(self):
        """Times the host's wait for the next batch (the body of the ``with``)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._finished:
                self._input_wait_s += time.perf_counter() - start

    def dispatched(self, step: int, outputs: Any) -> None:
        """Step ``step`` has just been dispatched (its call returned ``outputs``, maybe not ready).

        Stamped after the call returns, so the first call's compilation is not device time.
        """
        self._queue.put((step, outputs, time.perf_counter()))

    def pause(self) -> None:
        """The host is about to do deliberate work: don't count the gap before the next step."""
        self._queue.put(_PAUSE)

    def take(self, step: int, timeout: float | None = None) -> dict[str, float]:
        """``{'device_idle_s', 'device_busy_s', 'input_wait_s'}`` since the last call, once
        ``step`` has finished."""
        with self._finished:
            if not self._finished.wait_for(lambda: self._last_finished_step >= step, timeout):
                raise TimeoutError(f"step {step} did not finish within {timeout} s")
            result = {"device_idle_s": self._idle_s, "device_busy_s": self._busy_s,
                      "input_wait_s": self._input_wait_s}
            self._idle_s = self._busy_s = self._input_wait_s = 0.0
        return result

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _watch(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if item is _PAUSE:
                self._previous_finish = None
                continue
            step, outputs, dispatched_at = item
            try:
                jax.block_until_ready(outputs)
            except Exception:  # noqa: BLE001 - the training loop sees the same error itself
                pass
            finished = time.perf_counter()
            with self._finished:
                started = dispatched_at
                if self._previous_finish is not None:
                    self._idle_s += max(0.0, dispatched_at - self._previous_finish)
                    started = max(dispatched_at, self._previous_finish)
                self._busy_s += max(0.0, finished - started)
                self._previous_finish = finished
                self._last_finished_step = step
                self._finished.notify_all()



def idle_fraction(waits: dict[str, float]) -> float:
    """The share of device time spent idle, from ``DeviceIdleMeter.take`` sums."""
    total = waits["device_idle_s"] + waits["device_busy_s"]
    return waits["device_idle_s"] / total if total > 0 else 0.0
