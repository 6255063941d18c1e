"""``Sandbox.run(program)``: one program in one isolated, limited process tree; never raises.

Each run: a new session (its own process group), the isolation command of
:mod:`reasonlab.sandbox.isolation` around ``python -s -S -B -c <child.py>``, a scrubbed
environment (nothing of the caller's; ``HOME`` is the work directory, ``PYTHONHASHSEED=0`` for
reproducible runs), stdout and stderr read incrementally up to their caps, and a wall-clock
deadline. At the deadline, or when an output cap is passed, the whole process group is killed
(and with it the pid namespace, whose pid 1 is in the group); after any run the group is killed
again before the leader is reaped, so nothing the program started survives it (with isolation
``none`` a process that left the group by ``setsid`` is found by the run's marker and killed).
"""
from __future__ import annotations

import itertools
import json
import os
import secrets
import selectors
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from reasonlab.sandbox.config import Limits, Program, RunResult, SandboxConfig, SandboxUnavailable
from reasonlab.sandbox.isolation import (
    CHOICES,
    UID_BASE,
    UID_SPAN,
    WORKDIR,
    Isolation,
    PythonInstall,
    command_for,
    detect,
    find_processes,
)
from reasonlab.sandbox.outcome import Seen, classify, exit_and_signal

EXIT_GRACE_S = 0.5        # after the program exits, how long to wait for its pipes to close
REAP_WAIT_S = 1.0         # after a kill, how long to wait for the namespace to empty
REPORT_CAP = 4 << 20
_CHUNK = 1 << 16
_LEN = struct.Struct(">Q")


def frame(obj) -> bytes:
    payload = json.dumps(obj).encode()
    return _LEN.pack(len(payload)) + payload


def child_env(workdir: str, tmpdir: str) -> dict[str, str]:
    """The program's whole environment: nothing is inherited from the caller."""
    return {"HOME": workdir, "PWD": workdir, "TMPDIR": tmpdir, "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


@dataclass
class Exchange:
    """What the I/O loop saw."""

    out: dict[str, bytearray] = field(default_factory=dict)
    over: str | None = None        # the stream that passed its cap
    timed_out: bool = False
    exited: bool = False


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited, without reaping it (its pgid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def communicate(pid: int, writes: dict[int, bytes], reads: dict[str, tuple[int, int]],
                deadline: float) -> Exchange:
    """Feed ``writes`` ({fd: data}), read ``reads`` ({name: (fd, cap)}) until the process has
    exited and its pipes closed, a cap is passed, or ``deadline`` (``time.monotonic``)."""
    ex = Exchange(out={name: bytearray() for name in reads})
    sel = selectors.DefaultSelector()
    pending = dict(writes)
    for fd in pending:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_WRITE, ("w", fd))
    for name, (fd, cap) in reads.items():
        sel.register(fd, selectors.EVENT_READ, ("r", name))
    try:
        pidfd = os.pidfd_open(pid)
        sel.register(pidfd, selectors.EVENT_READ, ("p", None))
    except (AttributeError, OSError):
        pidfd = None
    open_reads = set(reads)
    grace_end = None
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                ex.timed_out = not ex.exited
                break
            if pidfd is None and not ex.exited and _exited(pid):
                ex.exited, grace_end = True, now + EXIT_GRACE_S
            if ex.exited and (not open_reads or now >= grace_end):
                break
            limit = min(deadline, grace_end) if grace_end else deadline
            wait = limit - now if pidfd is not None else min(limit - now, 0.02)
            for key, _ in sel.select(max(0.0, wait)):
                kind, what = key.data
                if kind == "p":
                    sel.unregister(key.fileobj)
                    ex.exited, grace_end = True, time.monotonic() + EXIT_GRACE_S
                elif kind == "w":
                    _write_some(sel, what, pending)
                else:
                    fd, cap = reads[what]
                    chunk = os.read(fd, _CHUNK)
                    if not chunk:
                        sel.unregister(fd)
                        open_reads.discard(what)
                        continue
                    buf = ex.out[what]
                    room = max(0, cap - len(buf))
                    buf += chunk[:room]
                    if len(chunk) > room and what != "report":
                        ex.over = what
            if ex.over:
                break
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        for fd in pending:
            _close(fd)
    return ex


def _write_some(sel, fd: int, pending: dict[int, bytes]) -> None:
    data = pending[fd]
    try:
        done = os.write(fd, data[:_CHUNK])
    except (BrokenPipeError, BlockingIOError, OSError):
        done = len(data)           # the reader is gone: drop what is left
    pending[fd] = data = data[done:]
    if not data:
        sel.unregister(fd)
        del pending[fd]
        _close(fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def remove_tree(path: str) -> None:
    """Remove a work directory, whatever permissions the program left on it."""
    def fix(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            os.chmod(target, stat.S_IRWXU)
            func(target)
        except OSError:
            pass
    shutil.rmtree(path, onerror=fix)


class Sandbox:
    """Runs :class:`Program`\\ s under the isolation detected at construction.

    Raises :class:`SandboxUnavailable` (a ConfigError, one line) when the requested backend
    does not work here, or when only ``none`` works and ``allow_unisolated`` is off.
    """

    def __init__(self, config: SandboxConfig | None = None, python: PythonInstall | None = None,
                 isolation: Isolation | None = None):
        self.config = config or SandboxConfig()
        if self.config.isolation not in CHOICES:
            raise SandboxUnavailable(f"sandbox.isolation: unknown value {self.config.isolation!r}; "
                                     f"choose from: {', '.join(CHOICES)}")
        self.config.limits.check()
        self.python = python or PythonInstall.current()
        self.isolation = isolation or detect(self.config.isolation, self.python)
        check_isolation(self.isolation, self.config)
        self.marker = f"reasonlab-sandbox-{secrets.token_hex(6)}"
        self._child_source = Path(__file__).with_name("child.py").read_text()
        self._ids = itertools.count()

    def describe(self) -> str:
        """One line: the isolation in use."""
        return self.isolation.describe()

    def run(self, program: Program) -> RunResult:
        """Run one program; never raises (a failure of the sandbox itself is status ``error``)."""
        start = time.monotonic()
        try:
            return self._run(program, program.limits or self.config.limits, start)
        except Exception as exc:  # noqa: BLE001 - the caller must never crash because of a program
            return RunResult("error", wall_s=time.monotonic() - start,
                             detail=f"sandbox error: {type(exc).__name__}: {exc}"[:300])

    def leftover_processes(self) -> list[int]:
        """Pids of processes this sandbox started that are still alive (should be none)."""
        return find_processes(self.marker + "-")

    # ---- one run ---------------------------------------------------------------------------
    def _run(self, program: Program, limits: Limits, start: float) -> RunResult:
        if program.tests and not program.entry_point:
            return RunResult("error", detail="tests mode needs an entry_point")
        limits.check("program.limits.")
        isolated = self.isolation.isolated
        workdir = WORKDIR if isolated else tempfile.mkdtemp(prefix="reasonlab-sandbox-")
        token = secrets.token_hex(16)
        marker = f"{self.marker}-{next(self._ids)}-"
        try:
            if not isolated:
                os.chmod(workdir, 0o777)
            spec = self._spec(program, limits, workdir, token)
            seen, ex, wall = self._spawn_and_wait(program, limits, spec, workdir, marker, token, start)
        finally:
            if not isolated:
                remove_tree(workdir)
        status, detail, tests = classify(seen)
        exit_code, sig = exit_and_signal(seen.returncode, seen.wrapped)
        return RunResult(status, exit_code, sig, ex.out["stdout"].decode("utf-8", "replace"),
                         ex.out["stderr"].decode("utf-8", "replace"), round(wall, 4), detail, tests,
                         truncated=ex.over is not None)

    def _spec(self, program: Program, limits: Limits, workdir: str, token: str) -> bytes:
        public = {"mode": "tests" if program.tests else "program", "source": program.source,
                  "entry_point": program.entry_point, "limits": limits.rlimits(),
                  "guard": self.config.guard, "workdir": workdir,
                  "relative_nproc": not self.isolation.isolated}
        spec = frame(public)
        if program.tests:
            spec += frame({"token": token, "setup": program.setup, "tests": list(program.tests)})
        return spec

    def _spawn_and_wait(self, program, limits, spec, workdir, marker, token, start):
        spec_r, spec_w = os.pipe()
        rep_r, rep_w = os.pipe()
        in_r, in_w = os.pipe() if program.stdin else (subprocess.DEVNULL, None)
        argv = [self.python.executable, "-s", "-S", "-B", "-c", self._child_source, marker,
                str(spec_r), str(rep_w)]
        uid = UID_BASE + secrets.randbelow(UID_SPAN) if self.isolation.root_caller else None
        cmd = command_for(self.isolation.name, self.python, argv, uid, limits.work_mb)
        isolated = self.isolation.isolated
        try:
            proc = subprocess.Popen(
                cmd, stdin=in_r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(spec_r, rep_w),
                env=child_env(workdir, "/tmp" if isolated else workdir),
                cwd="/" if isolated else workdir, start_new_session=True)
        except BaseException:
            for fd in (spec_w, rep_r, in_w):
                if fd is not None:
                    _close(fd)
            raise
        finally:
            for fd in (spec_r, rep_w, in_r):
                if fd != subprocess.DEVNULL:
                    _close(fd)
        writes = {spec_w: spec}
        if in_w is not None:
            writes[in_w] = program.stdin.encode()
        reads = {"stdout": (proc.stdout.fileno(), limits.stdout_bytes),
                 "stderr": (proc.stderr.fileno(), limits.stderr_bytes), "report": (rep_r, REPORT_CAP)}
        try:
            ex = communicate(proc.pid, writes, reads, start + limits.wall_s)
        finally:
            killed = not _exited(proc.pid)
            _kill_group(proc.pid)          # the leader is not reaped yet: the pgid is still ours
            proc.wait()
            wall = time.monotonic() - start
            self._sweep(marker, isolated, killed)
            proc.stdout.close()
            proc.stderr.close()
            _close(rep_r)
        why = "timeout" if ex.timed_out else "output_limit" if ex.over else None
        seen = Seen(proc.returncode, why, ex.out["report"].decode("utf-8", "replace"),
                    ex.out["stderr"].decode("utf-8", "replace"), token, len(program.tests), isolated)
        return seen, ex, wall

    def _sweep(self, marker: str, isolated: bool, killed: bool) -> None:
        """After a kill, wait until the namespace has emptied; without isolation also kill what
        left the process group (found by the run's marker)."""
        if not killed and isolated:
            return
        deadline = time.monotonic() + REAP_WAIT_S
        while True:
            pids = find_processes(marker)
            if not pids or time.monotonic() > deadline:
                return
            if not isolated:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.01)


def check_isolation(isolation: Isolation, config: SandboxConfig) -> None:
    """SandboxUnavailable when the requested backend is not the one that works, or when there
    is no isolation and the caller did not opt in."""
    skipped = "; ".join(f"{n}: {why}" for n, why in isolation.unavailable)
    if config.isolation in ("bwrap", "unshare") and isolation.name != config.isolation:
        raise SandboxUnavailable(f"sandbox.isolation: {config.isolation} does not work here ({skipped})")
    if not isolation.isolated and not config.allow_unisolated:
        raise SandboxUnavailable(
            f"sandbox: no isolation available ({skipped or 'isolation=none requested'}); install "
            "bubblewrap (apt-get install bubblewrap) or set allow_unisolated=true to run untrusted "
            "code without isolation")
