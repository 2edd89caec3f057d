"""Input prepared ahead: :class:`Ahead` iterates any iterable in a background thread.

The training loop (``rajax.train.trainer.fit``) reads its batches through it, so that decoding the
next batch (and, across an epoch's end, building the next epoch's tf.data pipeline) overlaps the
steps the devices run. It knows nothing of batches or epochs; it only moves an iterator to a thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable


class Ahead:
    """Iterates ``items`` in a background thread, ``depth`` items ahead of the caller.

    Across an epoch's end too: the next epoch's input pipeline is built and starts decoding while
    the last steps (and the validation) of this one run, instead of the devices waiting for its
    first batch every epoch. Items come in order; an error of ``items`` is raised by ``next``.
    :meth:`close` (or leaving a ``with`` block) stops the thread and waits for it.
    """

    _END = object()

    def __init__(self, items: Iterable, depth: int = 1):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), daemon=True, name="rajax-input")
        self._thread.start()

    def _produce(self, items: Iterable) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as error:  # handed to the consumer, raised there
            self._put((self._END, error))
        finally:
            close = getattr(items, "close", None)  # a generator's clean-up, in the thread that ran it
            if close is not None:
                close()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        item, error = self._queue.get()
        if error is not None:
            raise error
        if item is self._END:
            raise StopIteration
        return item

    def close(self, timeout: float | None = 60.0) -> bool:
        """Stops the producer at its next item (a run that ends early, or fails) and waits for its
        thread to end: at most ``timeout`` seconds (an item being made is finished first; a
        producer stuck longer is left behind, a daemon thread). Returns whether the thread ended."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
