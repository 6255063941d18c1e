"""Run a picklable function in a separate process under a hard, kill-on-timeout deadline.

Why a process: symbolic checkers (sympy via math-verify) can hang in C code where no signal or
thread can stop them, and ``signal.alarm`` only works in the main thread. A worker process is
killed (SIGKILL) when a call overruns, and a fresh one is started for the next call.

Workers are plain ``python -m reasonlab.grading.worker`` subprocesses talking over pipes, not
``multiprocessing`` children, so the caller's ``__main__`` is never re-imported and nothing is
forked from a process that may hold threads (torch). The parent's ``sys.path`` is passed on, so
any importable top-level function works.

>>> with WorkerPool(size=1) as pool:
...     pool.run(divmod, (7, 2), timeout=30.0)
(3, 1)
"""
from __future__ import annotations

import importlib
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection

STARTUP_TIMEOUT_S = 120.0


class _Timeout:
    """Type of :data:`TIMEOUT`, the result of a call that was killed for overrunning."""

    def __repr__(self) -> str:
        return "TIMEOUT"

    def __reduce__(self):
        return "TIMEOUT"


TIMEOUT = _Timeout()


@dataclass(frozen=True)
class WorkerError:
    """Result of a call that raised in the worker (or whose worker died): the error text."""

    message: str


def hang(*_args, **_kwargs) -> None:
    """Sleep (practically) forever: a deliberately pathological function for timeout tests."""
    time.sleep(3600)


class Worker:
    """One persistent worker process; not thread-safe on its own (see :class:`WorkerPool`)."""

    def __init__(self, preload: tuple[str, ...] = (), show_stderr: bool = False):
        self.preload = tuple(preload)
        self.show_stderr = show_stderr
        self._proc: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "reasonlab.grading.worker", str(child_read), str(child_write)],
            pass_fds=(child_read, child_write), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=None if self.show_stderr else subprocess.DEVNULL,
        )
        os.close(child_read)
        os.close(child_write)
        self._recv = Connection(parent_read, writable=False)
        self._send = Connection(parent_write, readable=False)
        self._send.send(self.preload)
        if not self._recv.poll(STARTUP_TIMEOUT_S):
            self.kill()
            raise RuntimeError("grading worker did not start in time")
        status, detail = self._recv.recv()
        if status != "ready":
            self.kill()
            raise ImportError(f"grading worker could not start: {detail}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def call(self, fn, args: tuple = (), kwargs: dict | None = None, timeout: float = 3.0):
        """``fn(*args, **kwargs)`` in the worker; TIMEOUT (worker killed) or WorkerError on failure.

        The deadline covers only the call: starting the worker (and its preloads) is not counted.
        """
        if not self.alive():
            self.kill()
            self._start()
        try:
            self._send.send((fn, tuple(args), dict(kwargs or {})))
            if not self._recv.poll(timeout):
                self.kill()
                return TIMEOUT
            status, value = self._recv.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            self.kill()
            return WorkerError(f"worker died: {type(exc).__name__}")
        return value if status == "ok" else WorkerError(value)

    def kill(self) -> None:
        """Hard-kill the process (if any) and close the pipes."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._send = self._recv = None


class WorkerPool:
    """A fixed set of :class:`Worker` s shared safely by any number of threads.

    Each call borrows an idle worker (blocking until one is free), so at most ``size`` calls run
    at once. Workers start lazily and are killed by :meth:`close`, at garbage collection, or at
    interpreter exit.
    """

    def __init__(self, size: int = 1, preload: tuple[str, ...] = (), show_stderr: bool = False):
        if size < 1:
            raise ValueError(f"WorkerPool size must be >= 1, got {size}")
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._workers = [Worker(preload, show_stderr) for _ in range(size)]
        for worker in self._workers:
            self._idle.put(worker)
        self._finalizer = weakref.finalize(self, _kill_all, list(self._workers))

    def run(self, fn, args: tuple = (), kwargs: dict | None = None, timeout: float = 3.0):
        """``fn(*args, **kwargs)`` under a hard timeout: its value, TIMEOUT or WorkerError."""
        worker = self._idle.get()
        try:
            return worker.call(fn, args, kwargs, timeout)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _kill_all(workers: list[Worker]) -> None:
    for worker in workers:
        worker.kill()


def run_with_timeout(fn, args: tuple = (), kwargs: dict | None = None, timeout: float = 3.0):
    """One-shot: start a worker, run the call under ``timeout``, stop the worker."""
    worker = Worker()
    try:
        return worker.call(fn, args, kwargs, timeout)
    finally:
        worker.kill()


class LazyOnce:
    """A value built on first :meth:`get`, at most once even under threads (e.g. a task's pool)."""

    def __init__(self, factory):
        self._factory = factory
        self._lock = threading.Lock()
        self._value = None

    def get(self):
        with self._lock:
            if self._value is None:
                self._value = self._factory()
            return self._value

    def peek(self):
        """The value if it was built already, else None (never builds it)."""
        with self._lock:
            return self._value


def _serve(read_fd: int, write_fd: int) -> None:
    """Worker main loop: import preloads, then answer ``(fn, args, kwargs)`` requests forever."""
    recv = Connection(read_fd, writable=False)
    send = Connection(write_fd, readable=False)
    try:
        for name in recv.recv():
            importlib.import_module(name)
    except ImportError as exc:
        send.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    send.send(("ready", None))
    while True:
        try:
            request = recv.recv_bytes()
        except EOFError:
            return
        try:
            fn, args, kwargs = pickle.loads(request)
            reply = ("ok", fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - any failure of the user function is reported
            reply = ("error", f"{type(exc).__name__}: {exc}")
        send.send(reply)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
