"""``reasonlab bench sandbox``: ``programs`` code-task programs through the sandbox pool.

The mix is what RL verification sees: tiny-code problems checked by their tests (judge and
candidate processes), mostly correct, some wrong, some that exit while loading, break the guard
or loop until the wall-clock limit (1 s here). Reported: programs per second, latency
percentiles, the count of each status (each must be the expected one), and the processes left
behind afterwards (must be 0). No model and no torch are involved.
"""
from __future__ import annotations

import os
import random
import statistics
import time

from reasonlab.bench.common import BenchConfig
from reasonlab.config import ConfigError

BENCH_WALL_S = 1.0
MIX = (  # kind, share of the programs, status it must end with
    ("correct", 0.85, "ok"), ("wrong", 0.10, "fail"), ("exits", 0.03, "crash"),
    ("forks", 0.01, "sandbox_violation"), ("loops", 0.01, "timeout"),
)
BROKEN = {"wrong": "def f(x):\n    return x\n", "exits": "import sys\nsys.exit(0)\n",
          "forks": "import os\nos.fork()\n", "loops": "while True:\n    pass\n"}


def bench_programs(n: int, seed: int):
    """``n`` (Program, expected status) pairs: tiny-code problems with the :data:`MIX` of codes."""
    from reasonlab.sandbox import Limits, Program
    from reasonlab.tasks.code import CodeTask

    task = CodeTask()
    rows = task.generate(min(n, 2000), seed=seed, split="train", level=2)
    rng = random.Random(seed)
    kinds = [kind for kind, share, _ in MIX for _ in range(max(1, round(share * n)))][:n]
    kinds += ["correct"] * (n - len(kinds))
    rng.shuffle(kinds)
    expected = {kind: status for kind, _, status in MIX}
    limits = Limits(wall_s=BENCH_WALL_S, memory_mb=512)
    out = []
    for i, kind in enumerate(kinds):
        row = rows[i % len(rows)]
        code = row["answer"] + "\n" if kind == "correct" else BROKEN[kind]
        program = task.program(row, code)
        out.append((Program(program.source, program.tests, program.entry_point, program.setup,
                            limits=limits), expected[kind]))
    return out


def bench_sandbox(cfg: BenchConfig) -> dict:
    from reasonlab.sandbox import Sandbox, SandboxConfig, SandboxPool

    if cfg.programs < 1 or cfg.sandbox_workers < 0:
        raise ConfigError(f"programs: must be >= 1 and sandbox_workers >= 0, got {cfg.programs}, "
                          f"{cfg.sandbox_workers}")
    sandbox = Sandbox(SandboxConfig(isolation=cfg.sandbox_isolation))
    jobs = bench_programs(cfg.programs, cfg.seed)
    with SandboxPool(sandbox, cfg.sandbox_workers) as pool:
        pool.map([jobs[0][0]])                                   # warm-up (page cache)
        start = time.perf_counter()
        results = pool.map([program for program, _ in jobs])
        elapsed = time.perf_counter() - start
        workers = pool.workers
    leftover = sandbox.leftover_processes()
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    unexpected = sum(r.status != want for r, (_, want) in zip(results, jobs))
    walls = sorted(r.wall_s for r in results)
    return {
        "isolation": sandbox.describe(), "programs": len(results), "workers": workers,
        "cpu_cores": os.cpu_count(), "seconds": round(elapsed, 2),
        "programs_per_s": round(len(results) / elapsed, 1),
        "latency_p50_s": round(statistics.median(walls), 3),
        "latency_p95_s": round(walls[int(0.95 * (len(walls) - 1))], 3),
        "latency_max_s": round(walls[-1], 3), "statuses": statuses,
        "unexpected_statuses": unexpected, "leftover_processes": len(leftover),
    }
