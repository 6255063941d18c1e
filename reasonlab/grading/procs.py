"""Worker processes for hard-kill timeouts: the request loop and a template process that forks.

Starting a Python process that imports math-verify and sympy takes seconds; forking one that
already has takes milliseconds. So a pool starts one *template* process (``python -m
reasonlab.grading.procs``, a fresh interpreter: nothing is forked from the caller, which may hold
threads, and the caller's ``__main__`` is never re-imported), which imports the preloads, runs
their warm-up functions, and then forks a worker whenever the pool asks for one.

The pool and the template talk over a Unix socket pair with fixed-size messages: ``F`` carries
the worker's two pipe ends (``SCM_RIGHTS``) and is answered with the worker's pid, ``K pid``
kills and reaps one worker, ``X`` (or the pool going away) kills every worker and ends the
template. Workers answer pickled ``(fn, args, kwargs)`` requests on their pipes until EOF.
"""
from __future__ import annotations

import importlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

STARTUP_TIMEOUT_S = 120.0
REPLY_TIMEOUT_S = 10.0  # a fork or kill request is answered in milliseconds
_MSG = struct.Struct("<cq")  # command byte, pid


def hang(*_args, **_kwargs) -> None:
    """Sleep (practically) forever: a deliberately pathological function for timeout tests."""
    threading.Event().wait(3600)


def serve(recv: Connection, send: Connection) -> None:
    """Answer ``(fn, args, kwargs)`` requests with ``("ok", value)`` or ``("error", text)``."""
    while True:
        try:
            request = recv.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, args, kwargs = pickle.loads(request)
            reply = ("ok", fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - any failure of the user function is reported
            reply = ("error", f"{type(exc).__name__}: {exc}")
        send.send(reply)


def run_preloads(names: tuple[str, ...]) -> None:
    """Import each ``module``; for ``module:function`` also call ``function()`` once (warm-up)."""
    for name in names:
        module_name, _, function = name.partition(":")
        module = importlib.import_module(module_name)
        if function:
            getattr(module, function)()


class Template:
    """Parent side of the template process; thread-safe."""

    def __init__(self, preload: tuple[str, ...] = (), show_stderr: bool = False):
        self.preload = tuple(preload)
        self.show_stderr = show_stderr
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Start the template (if not running) and wait until its preloads are imported."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._stop()
            parent, child = socket.socketpair()
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "reasonlab.grading.procs", str(child.fileno())],
                pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None if self.show_stderr else subprocess.DEVNULL)
            child.close()
            self._sock = parent
            payload = pickle.dumps(self.preload)
            parent.sendall(_MSG.pack(b"P", len(payload)) + payload)
            parent.settimeout(STARTUP_TIMEOUT_S)
            try:
                ready = _MSG.unpack(_recv_exact(parent, _MSG.size))[0] == b"R"
            except OSError:
                ready = False
            parent.settimeout(REPLY_TIMEOUT_S)
            if not ready:
                self._stop()
                raise ImportError(f"grading worker could not start (preload {self.preload}); "
                                  "run with show_stderr=True to see why")

    def fork(self) -> tuple[int, Connection, Connection]:
        """A new warm worker: ``(pid, recv, send)``. OSError if the template is gone."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            with self._lock:
                try:
                    if self._sock is None:
                        raise OSError("grading template is not running")
                    socket.send_fds(self._sock, [_MSG.pack(b"F", 0)], [to_child_r, from_child_w])
                    _, pid = _MSG.unpack(_recv_exact(self._sock, _MSG.size))
                except OSError:  # gone, or no reply in time: start over on the next start()
                    self._stop()
                    raise
        except BaseException:
            for fd in (to_child_w, from_child_r):
                os.close(fd)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        return pid, Connection(from_child_r, writable=False), Connection(to_child_w,
                                                                         readable=False)

    def kill(self, pid: int) -> None:
        """Kill and reap worker ``pid`` (a no-op once the template is gone)."""
        with self._lock:
            if self._sock is None:
                return
            try:
                self._sock.sendall(_MSG.pack(b"K", pid))
                _recv_exact(self._sock, _MSG.size)
            except OSError:
                self._stop()

    def close(self) -> None:
        """Kill every worker and the template."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.sendall(_MSG.pack(b"X", 0))
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("grading template closed the connection")
        data += chunk
    return data


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _reap_exited(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _fork_worker(sock: socket.socket, fds: list[int]) -> int:
    pid = os.fork()
    if pid == 0:  # the worker: serve on the received pipes, never return into the template
        code = 1
        try:
            sock.close()
            serve(Connection(fds[0], writable=False), Connection(fds[1], readable=False))
            code = 0
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    return pid


def template_main(sock_fd: int) -> None:
    """The template process: preload, report ready, then fork/kill workers on request. Ctrl-C
    is left to the pool's process, which stops the template and its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=sock_fd)
    try:
        _, size = _MSG.unpack(_recv_exact(sock, _MSG.size))
        run_preloads(pickle.loads(_recv_exact(sock, size)))
    except Exception:  # noqa: BLE001 - the parent raises a clear error for any failure
        sock.sendall(_MSG.pack(b"E", 0))
        return
    sock.sendall(_MSG.pack(b"R", 0))
    children: set[int] = set()
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, _MSG.size, 2)
            if 0 < len(msg) < _MSG.size:
                msg += _recv_exact(sock, _MSG.size - len(msg))
        except OSError:
            msg, fds = b"", []
        _reap_exited(children)
        if len(msg) != _MSG.size or msg[:1] == b"X":
            break
        command, pid = _MSG.unpack(msg)
        if command == b"F":
            pid = _fork_worker(sock, fds)
            children.add(pid)
        elif command == b"K" and pid in children:
            _kill_and_reap(pid)
            children.discard(pid)
        sock.sendall(_MSG.pack(b"A", pid))
    for pid in children:
        _kill_and_reap(pid)


if __name__ == "__main__":
    template_main(int(sys.argv[1]))
