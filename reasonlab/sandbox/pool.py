"""``SandboxPool``: many programs through one :class:`~reasonlab.sandbox.runner.Sandbox` at once.

Threads drive the subprocesses (each run spends its time waiting on pipes, so the GIL is no
limit); results come back in input order, every program gets a :class:`RunResult` whatever it
does, and nothing the programs started outlives the pool.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable

from reasonlab.sandbox.config import Program, RunResult
from reasonlab.sandbox.runner import Sandbox


def default_workers() -> int:
    """Two runs per CPU core: a run is partly process start-up, partly waiting."""
    return 2 * (os.cpu_count() or 1)


class SandboxPool:
    """``with SandboxPool(sandbox) as pool: results = pool.map(programs)``."""

    def __init__(self, sandbox: Sandbox, workers: int = 0):
        if workers < 0:
            raise ValueError(f"workers: must be >= 0 (0: two per CPU core), got {workers}")
        self.sandbox = sandbox
        self.workers = workers or sandbox.config.workers or default_workers()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")

    def submit(self, program: Program) -> Future:
        """A future of the program's RunResult (it never holds an exception)."""
        return self._executor.submit(self.sandbox.run, program)

    def map(self, programs: Iterable[Program]) -> list[RunResult]:
        """Results in the order of ``programs``."""
        return [f.result() for f in [self.submit(p) for p in programs]]

    def close(self) -> None:
        """Wait for running programs (each is bounded by its limits) and stop the threads."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
