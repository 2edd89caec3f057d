"""Video decoding in worker processes, so that decoding scales with the host's cores.

PyAV releases the GIL inside FFmpeg, but a pipeline's per-frame Python (the decode loop, frame
objects, conversions) does not: decoding several video files in threads of one process contends
for the GIL, and on two cores it was slower than on one. A :class:`DecoderPool` runs that work in
``processes`` worker processes instead, each decoding one video at a time:

- a worker is a plain ``python`` process running :func:`_serve` (not ``multiprocessing``: nothing
  of the caller's ``__main__`` is imported again, and no fork of a process holding TensorFlow's or
  JAX's threads). It imports NumPy, PyAV and ``rajax.data`` only;
- requests and small replies travel through the worker's stdin and stdout as pickles that only
  rajax itself writes (no user file is ever unpickled);
- the decoded frames, up to 100 MB per video, travel through shared memory: each worker owns one
  anonymous memory file (``memfd``, not ``/dev/shm``, which containers often cap at 64 MB) mapped by
  both processes. The worker writes the frames there, the caller copies them out once;
- the caller calls :meth:`DecoderPool.run` from as many threads as it likes (tf.data's parallel map
  does); each call takes an idle worker and blocks, without the GIL, until the reply comes;
- a worker that dies (FFmpeg crashing on a broken file, a kill) fails only the call it was serving
  (:class:`DecoderDied`); a fresh worker takes its place. When the caller dies, the workers read
  the end of their stdin and exit.

Work is a module-level function ``function(*args, allocate=...)`` returning ``(array, meta)``: it
asks ``allocate(shape)`` for the uint8 array it returns (a view of the shared memory, so the frames
are written once) and returns picklable ``meta`` beside it. :func:`shared_pool` keeps one pool per
size for the whole process.
"""

from __future__ import annotations

import atexit
import mmap
import os
import pickle
import queue
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

_HEADER = struct.Struct("<Q")  # the byte length of the pickle that follows


class DecoderDied(RuntimeError):
    """The worker process serving a call died before replying."""


class PoolClosed(RuntimeError):
    """The pool was closed (or the process is exiting) before or while serving a call."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) < size:
        raise EOFError
    return data


def _framed(data: bytes) -> bytes:
    """``data`` behind its length, as ``_read_frame`` reads it back."""
    return _HEADER.pack(len(data)) + data


def _read_frame(stream) -> bytes:
    (size,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return _read_exactly(stream, size)


def _own_usage() -> tuple[float, float, int, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt, usage.ru_nvcsw + usage.ru_nivcsw


def _shared_memory_file():
    """An anonymous file in memory, inheritable by a child: a memfd where there is one (Linux; not
    bounded by /dev/shm's size), else an unlinked temporary file."""
    if hasattr(os, "memfd_create"):  # close-on-exec: only the worker it is passed to inherits it
        return os.memfd_create("rajax-decoder")
    handle = tempfile.TemporaryFile()
    fd = os.dup(handle.fileno())
    handle.close()
    return fd


class _Slot:
    """One worker's shared memory: a file both processes map; the writer grows it when needed."""

    def __init__(self, fd: int):
        self.fd = fd
        self.map: mmap.mmap | None = None

    def view(self, nbytes: int, grow: bool) -> memoryview:
        if self.map is None or len(self.map) < nbytes:
            if self.map is not None:
                self.map.close()
            size = os.fstat(self.fd).st_size
            if size < nbytes:
                if not grow:
                    raise RuntimeError(f"shared memory holds {size} bytes, the reply says {nbytes}")
                size = nbytes
                os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size)
        return memoryview(self.map)[:nbytes]

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _serve() -> None:
    """A worker's loop: requests from stdin, replies to the original stdout, logs to stderr."""
    # Ctrl-C reaches the whole process group: the caller handles it, and its workers end when it
    # closes them or exits (the end of their stdin), not with a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print (or a library's) must not corrupt the replies
    requests = os.fdopen(0, "rb")
    slot = _Slot(int(sys.argv[1]))

    def allocate(shape, dtype=np.uint8):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        allocate.shape, allocate.dtype = tuple(shape), dtype
        return np.frombuffer(slot.view(nbytes, grow=True), dtype).reshape(shape)

    while True:
        allocate.shape, array, meta = None, None, None
        try:
            request = _read_frame(requests)
        except EOFError:  # the caller closed the pool, or died
            return
        try:
            function, args = pickle.loads(request)  # e.g. a function this worker cannot import
            array, meta = function(*args, allocate=allocate)
            if array is not None and allocate.shape is None:  # not written in place: copy it there
                allocate(array.shape, array.dtype)[...] = array
            dtype = None if allocate.shape is None else allocate.dtype.str
            reply = ("ok", (allocate.shape, dtype, meta))
        except Exception as error:  # noqa: BLE001 - the caller decides what a failure means
            reply = ("error", str(error) or type(error).__name__)
        try:
            reply = pickle.dumps((*reply, _own_usage()), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # noqa: BLE001 - e.g. a result that does not pickle
            reply = pickle.dumps(("error", f"the result does not pickle: {error}", _own_usage()))
        try:
            replies.write(_framed(reply))
            replies.flush()
        except BrokenPipeError:  # the caller died while this call ran
            return
        array = meta = None  # no view of the shared memory may outlive the call: growing it remaps


class _Worker:
    def __init__(self):
        self.slot = _Slot(_shared_memory_file())
        package_root = str(Path(__file__).resolve().parents[2])
        code = f"import sys; sys.path.insert(0, {package_root!r}); from rajax.data.decoders import _serve; _serve()"
        self.process = subprocess.Popen(
            # -P: the caller's working directory is not on the worker's path (nothing there can
            # shadow a module the worker imports)
            [sys.executable, "-P", "-c", code, str(self.slot.fd)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(self.slot.fd,), bufsize=-1,
        )
        self.usage = (0.0, 0.0, 0, 0)  # the worker's own, at its last reply
        self.serving = False  # a request written, its reply not yet read

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self, timeout: float = 5.0) -> int | None:
        """Ends the worker (it finishes its call first; killed after ``timeout`` s): its exit status."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process.stdout.close()
        self.slot.close()
        return code


class DecoderPool:
    """``processes`` worker processes serving :meth:`run` calls from any number of threads."""

    def __init__(self, processes: int):
        if processes < 1:
            raise ValueError(f"a decoder pool needs at least 1 process, got {processes}")
        self._lock = threading.Lock()
        self._workers = [_Worker() for _ in range(processes)]
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        for worker in self._workers:
            self._idle.put(worker)
        self._retired_usage = np.zeros(4)
        self._closed = False

    def pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._workers]

    def serving_pids(self) -> list[int]:
        """The workers holding a request now, its reply not yet read (for tests that kill one mid-call)."""
        with self._lock:
            return [worker.pid for worker in self._workers if worker.serving]

    def _replace(self, worker: _Worker) -> tuple[_Worker, int | None]:
        """A fresh worker in ``worker``'s place, and the exit status of the one replaced."""
        code = worker.close(timeout=1.0)
        fresh = _Worker()
        with self._lock:
            self._retired_usage += np.array(worker.usage, dtype=float)
            self._workers[self._workers.index(worker)] = fresh
        return fresh, code

    @staticmethod
    def _send(worker: _Worker, message: bytes) -> None:
        worker.process.stdin.write(message)
        worker.process.stdin.flush()
        worker.serving = True

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed("the decoder pool is closed")

    def run(self, function, *args):
        """``function(*args, allocate=...)`` in a worker: ``(array or None, meta)``.

        Raises RuntimeError with the worker's message when the function raised, and
        :class:`DecoderDied` when the worker died while serving this call.
        """
        message = _framed(pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL))
        self._check_open()
        worker = self._idle.get()
        try:
            self._check_open()  # closed while this call waited for a worker
            try:
                self._send(worker, message)
            except (OSError, ValueError):  # died while idle: a fresh worker serves the call
                self._check_open()
                worker, _ = self._replace(worker)
                self._send(worker, message)
            try:
                status, payload, worker.usage = pickle.loads(_read_frame(worker.process.stdout))
            except (EOFError, OSError, ValueError):
                self._check_open()  # closing ends the workers: no failure of theirs, no replacement
                worker, code = self._replace(worker)
                raise DecoderDied(f"the decoding process died (exit status {code})") from None
            finally:
                worker.serving = False
            if status == "error":
                raise RuntimeError(payload)
            shape, dtype, meta = payload
            if shape is None:
                return None, meta
            dtype = np.dtype(dtype)
            try:
                view = worker.slot.view(int(np.prod(shape)) * dtype.itemsize, grow=False)
                return np.frombuffer(view, dtype).reshape(shape).copy(), meta  # the slot is reused next call
            except (OSError, ValueError):
                self._check_open()  # the pool closed under this call (at exit, after its timeout)
                raise
        finally:
            self._idle.put(worker)

    def usage(self) -> dict:
        """CPU time, page faults and context switches of the workers, living and replaced, as
        reported at their last replies (``getrusage`` of the caller does not count them)."""
        with self._lock:
            total = self._retired_usage + sum(np.array(w.usage, dtype=float) for w in self._workers)
        return {"user_s": total[0], "system_s": total[1], "minor_faults": int(total[2]),
                "context_switches": int(total[3])}

    def close(self, timeout: float = 30.0) -> None:
        """Ends the workers and frees their memory. A call in progress finishes first (its worker
        is taken back from the caller, up to ``timeout`` s); calls waiting for a worker, and
        calls made after, raise :class:`PoolClosed`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            count = len(self._workers)
        deadline = time.monotonic() + timeout
        taken = []
        for _ in range(count):
            try:
                taken.append(self._idle.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:  # a caller still holds a worker: end it all the same
                break
            taken[-1].close()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:  # those not taken back; closing is idempotent
            try:
                worker.close(timeout=1.0)
            except OSError:
                pass
        for worker in taken:  # wakes the calls waiting for a worker: they raise PoolClosed
            self._idle.put(worker)


_pools: dict[int, DecoderPool] = {}
_pools_lock = threading.Lock()
_exiting = False  # set at interpreter exit: no new pool may start then


def shared_pool(processes: int = 0) -> DecoderPool:
    """The process-wide pool of ``processes`` workers (0: one per usable core), started on first use."""
    processes = processes or usable_cores()
    with _pools_lock:
        if _exiting:  # a pipeline thread still decoding ahead while the interpreter exits
            raise PoolClosed("the process is exiting")
        pool = _pools.get(processes)
        if pool is None or pool._closed:
            pool = _pools[processes] = DecoderPool(processes)
        return pool


def shared_usage() -> dict:
    """:meth:`DecoderPool.usage` summed over the shared pools."""
    with _pools_lock:
        usages = [pool.usage() for pool in _pools.values()]
    return {key: sum(u[key] for u in usages) for key in ("user_s", "system_s", "minor_faults", "context_switches")}


@atexit.register
def _close_shared_pools() -> None:
    global _exiting
    with _pools_lock:
        _exiting = True
        for pool in _pools.values():
            pool.close()
