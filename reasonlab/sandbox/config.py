"""Sandbox settings, programs and results: small frozen dataclasses and the status table."""
from __future__ import annotations

from dataclasses import dataclass, field

from reasonlab.config import ConfigError

# every RunResult.status, in one place
STATUSES = {
    "ok": "exit status 0; in tests mode: every test passed, reported by the judge with this run's token",
    "fail": "a non-zero exit status; in tests mode: the code loaded and at least one test failed",
    "timeout": "killed at the wall-clock limit, or stopped by the CPU-time limit (SIGXCPU)",
    "crash": "killed by a signal; in tests mode: the code did not load (syntax error, exception, "
             "exit) or its process ended during the tests",
    "memory": "over the address-space limit (MemoryError)",
    "output_limit": "stdout or stderr over its cap: killed at that point",
    "sandbox_violation": "the guard stopped a process, signal, socket, ctypes, rlimit call or a "
                         "write, delete or rename outside the work directory",
    "error": "the sandbox itself failed: it could not start, or the tests' setup code failed",
}


class SandboxUnavailable(ConfigError):
    """No isolation here and the caller did not opt in (one line naming the fix)."""


@dataclass(frozen=True)
class Limits:
    """Per-program limits. Each process gets the rlimits; the whole sandbox is killed at
    ``wall_s``; the process count covers every process of the sandbox."""

    wall_s: float = 10.0          # wall-clock limit; then the process group and namespace are killed
    cpu_s: int = 0                # RLIMIT_CPU per process (0: wall_s rounded up, plus 1)
    memory_mb: int = 1024         # RLIMIT_AS per process (address space, not resident memory)
    processes: int = 32           # RLIMIT_NPROC: processes of the sandbox's uid / user namespace
    file_size_mb: int = 16        # RLIMIT_FSIZE: largest file a program may write
    open_files: int = 64          # RLIMIT_NOFILE
    work_mb: int = 64             # size of the tmpfs work directory (bwrap / unshare)
    stdout_bytes: int = 256_000   # over a cap the program is killed (output_limit)
    stderr_bytes: int = 64_000

    def check(self, prefix: str = "sandbox.limits.") -> None:
        """ConfigError naming the first field that is not positive (cpu_s may be 0: derived)."""
        for name in ("wall_s", "memory_mb", "processes", "file_size_mb", "open_files", "work_mb",
                     "stdout_bytes", "stderr_bytes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{prefix}{name}: must be > 0, got {value!r}")
        if not isinstance(self.cpu_s, int) or self.cpu_s < 0:
            raise ConfigError(f"{prefix}cpu_s: must be >= 0 (0: derived from wall_s), got {self.cpu_s!r}")

    def rlimits(self) -> dict[str, list[int]]:
        """``{"RLIMIT_X": [soft, hard]}`` for the child; the CPU hard limit is 1 s above the soft
        one (SIGXCPU first, then SIGKILL)."""
        cpu = self.cpu_s or int(self.wall_s) + 1
        mem = self.memory_mb << 20
        return {"RLIMIT_CPU": [cpu, cpu + 1], "RLIMIT_AS": [mem, mem],
                "RLIMIT_NPROC": [self.processes, self.processes],
                "RLIMIT_FSIZE": [self.file_size_mb << 20, self.file_size_mb << 20],
                "RLIMIT_NOFILE": [self.open_files, self.open_files], "RLIMIT_CORE": [0, 0]}


@dataclass(frozen=True)
class SandboxConfig:
    isolation: str = "auto"            # auto | bwrap | unshare | none (auto: the best that works here)
    allow_unisolated: bool = False     # run untrusted code even when only "none" is available
    guard: bool = True                 # Python audit-hook guard in the child (an extra layer)
    workers: int = 0                   # SandboxPool threads (0: 2 per CPU core)
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Program:
    """Python source to run. With ``tests`` (tests mode) the source must define
    ``entry_point``; each test is Python run by the judge with ``candidate`` and ``entry_point``
    bound to a proxy of that function; ``setup`` is trusted code the judge runs first (imports,
    helpers). Without tests the source runs as ``__main__`` with ``stdin``."""

    source: str
    tests: tuple[str, ...] = ()
    entry_point: str = ""
    setup: str = ""
    stdin: str = ""
    limits: Limits | None = None       # None: the sandbox's limits


@dataclass(frozen=True)
class RunResult:
    """What happened. ``tests`` holds one bool per test (tests not reached are False);
    ``detail`` is one line: the first failing test, the load error, the violation, the error."""

    status: str
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    detail: str = ""
    tests: tuple[bool, ...] = ()
    truncated: bool = False

    @property
    def passed(self) -> int:
        return sum(self.tests)

    @property
    def total(self) -> int:
        return len(self.tests)
