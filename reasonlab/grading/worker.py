"""Run a picklable function in a separate process under a hard, kill-on-timeout deadline.

Why a process: symbolic checkers (sympy via math-verify) can hang in C code where no signal or
thread can stop them, and ``signal.alarm`` only works in the main thread. A worker process is
killed (SIGKILL) when a call overruns.

A :class:`WorkerPool` grows on demand: a call takes an idle worker, or forks a new one (from a
warm template process, in milliseconds; see :mod:`reasonlab.grading.procs`) while fewer than
``size`` exist, or waits for one to come free. The call's ``timeout`` covers the wait too, so a
stuck check never delays another past its own deadline: every call returns its value, a
:class:`WorkerError` or :data:`TIMEOUT` within ``timeout`` (plus the pool's one-time start).

>>> with WorkerPool(size=2) as pool:
...     pool.run(divmod, (7, 2), timeout=30.0)
(3, 1)
"""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection

from reasonlab.grading.procs import Template, hang

__all__ = ["TIMEOUT", "WorkerError", "Worker", "WorkerPool", "run_with_timeout", "LazyOnce",
           "hang"]


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


@dataclass
class Worker:
    """One forked worker process; used by one call at a time."""

    pid: int
    recv: Connection
    send: Connection
    template: Template
    alive: bool = True

    def call(self, fn, args: tuple, kwargs: dict, timeout: float):
        """``fn(*args, **kwargs)`` in the worker; TIMEOUT (worker killed) or WorkerError."""
        try:
            self.send.send((fn, tuple(args), dict(kwargs)))
            if not self.recv.poll(max(0.0, timeout)):
                self.kill()
                return TIMEOUT
            status, value = self.recv.recv()
        except (EOFError, OSError) as exc:
            self.kill()
            return WorkerError(f"worker died: {type(exc).__name__}")
        return value if status == "ok" else WorkerError(value)

    def kill(self) -> None:
        """Hard-kill the process and close the pipes."""
        if self.alive:
            self.alive = False
            self.template.kill(self.pid)
            self.recv.close()
            self.send.close()


class WorkerPool:
    """Up to ``size`` workers, forked on demand, shared safely by any number of threads.

    ``preload`` names modules the template imports once (``module:function`` also calls a
    warm-up function), so every worker starts warm. The template starts on the first call (not
    counted in that call's deadline) and is stopped by :meth:`close`, at garbage collection, or
    at interpreter exit.
    """

    def __init__(self, size: int = 1, preload: tuple[str, ...] = (), show_stderr: bool = False):
        if size < 1:
            raise ValueError(f"WorkerPool size must be >= 1, got {size}")
        self.size = size
        self._template = Template(preload, show_stderr)
        self._cond = threading.Condition()
        self._idle: list[Worker] = []
        self._count = 0  # workers alive, idle or busy
        self._finalizer = weakref.finalize(self, _shutdown, self._template, self._idle)

    def run(self, fn, args: tuple = (), kwargs: dict | None = None, timeout: float = 3.0):
        """``fn(*args, **kwargs)`` under a hard timeout: its value, TIMEOUT or WorkerError."""
        self._template.start()
        deadline = time.monotonic() + timeout
        worker = self._acquire(deadline)
        if worker is None:
            return TIMEOUT
        try:
            return worker.call(fn, args, kwargs or {}, deadline - time.monotonic())
        finally:
            self._release(worker)

    def _acquire(self, deadline: float) -> Worker | None:
        with self._cond:
            while not self._idle and self._count >= self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return self._fork()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _fork(self) -> Worker:
        try:
            pid, recv, send = self._template.fork()
        except OSError:  # the template died (killed from outside): start a new one once
            self._template.start()
            pid, recv, send = self._template.fork()
        return Worker(pid, recv, send, self._template)

    def _release(self, worker: Worker) -> None:
        with self._cond:
            if worker.alive:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._cond.notify()

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _shutdown(template: Template, idle: list[Worker]) -> None:
    template.close()  # kills every worker, busy or idle
    for worker in idle:
        worker.kill()
    idle.clear()


def run_with_timeout(fn, args: tuple = (), kwargs: dict | None = None, timeout: float = 3.0):
    """One-shot: start a worker, run the call under ``timeout``, stop the worker."""
    with WorkerPool(size=1) as pool:
        return pool.run(fn, args, kwargs, timeout)


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
