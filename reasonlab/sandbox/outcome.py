"""From what the parent saw (exit status, why it killed, the report lines) to a status.

Pure functions: :func:`classify` gives ``(status, detail, tests)``; see
:data:`reasonlab.sandbox.config.STATUSES` for what each status means. A pass in tests mode needs
the judge's final report line carrying this run's token, and every test reported as passed.
"""
from __future__ import annotations

import json
import signal as signals
from dataclasses import dataclass

from reasonlab.sandbox.child import MEMORY_EXIT, VIOLATION_EXIT


@dataclass(frozen=True)
class Seen:
    """The raw facts of one finished run."""

    returncode: int | None
    killed: str | None            # "timeout" | "output_limit" | None
    report: str                   # the report stream (JSON lines)
    stderr: str
    token: str
    n_tests: int                  # 0: program mode
    wrapped: bool                 # bwrap / unshare: a signal shows as exit status 128 + N


def exit_and_signal(returncode: int | None, wrapped: bool) -> tuple[int | None, int | None]:
    """``(exit_code, signal)``: negative Popen codes are signals; behind bwrap / ``sh`` a
    signal shows as ``128 + N``.

    >>> exit_and_signal(139, True), exit_and_signal(-9, False), exit_and_signal(3, True)
    ((None, 11), (None, 9), (3, None))
    """
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    if wrapped and 128 < returncode < 128 + 65:
        return None, returncode - 128
    return returncode, None


def report_lines(text: str) -> list[dict]:
    """The JSON objects of the report stream (a torn last line is dropped)."""
    out = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def last_line(text: str, prefix: str = "") -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(prefix) and ln.strip()]
    return lines[-1][:300] if lines else ""


def classify(seen: Seen) -> tuple[str, str, tuple[bool, ...]]:
    """``(status, detail, per-test results)`` of one run."""
    lines = report_lines(seen.report)
    tests, first_failure = _test_results(lines, seen.n_tests, seen.token)
    exit_code, sig = exit_and_signal(seen.returncode, seen.wrapped)
    if seen.killed == "timeout":
        return "timeout", _progress("killed at the wall-clock limit", tests), tests
    if seen.killed == "output_limit":
        return "output_limit", "stdout or stderr over its cap: killed", tests
    if not any("started" in item for item in lines):
        why = last_line(seen.stderr) or f"exit status {seen.returncode}"
        return "error", f"the sandbox did not start: {why}", tests
    if sig == signals.SIGXCPU:
        return "timeout", _progress("stopped at the CPU-time limit", tests), tests
    if seen.n_tests:
        return _classify_tests(lines, tests, first_failure, seen, sig)
    if sig is not None:
        return "crash", f"killed by {signal_name(sig)}", tests
    if exit_code == VIOLATION_EXIT:
        return "sandbox_violation", last_line(seen.stderr, "sandbox_violation") or "guard", tests
    if exit_code == MEMORY_EXIT:
        return "memory", "MemoryError: over the memory limit", tests
    if exit_code == 0:
        return "ok", "", tests
    return "fail", f"exit status {exit_code}: {last_line(seen.stderr)}".rstrip(": "), tests


def _test_results(lines: list[dict], n_tests: int, token: str) -> tuple[tuple[bool, ...], str]:
    """Per-test results from the judge's lines (only lines carrying this run's token count)."""
    results = [False] * n_tests
    first_failure = ""
    for item in lines:
        index = item.get("test")
        if isinstance(index, int) and 0 <= index < n_tests and item.get("t") == token:
            results[index] = item.get("ok") is True
            if item.get("ok") is not True and not first_failure:
                first_failure = str(item.get("msg", ""))[:300]
    return tuple(results), first_failure


def _progress(what: str, tests: tuple[bool, ...]) -> str:
    return f"{what} ({sum(tests)}/{len(tests)} tests passed)" if tests else what


def _classify_tests(lines, tests, first_failure, seen: Seen, sig) -> tuple[str, str, tuple[bool, ...]]:
    merged = {k: v for item in lines for k, v in item.items()}
    if "setup_error" in merged:
        return "error", f"the tests' setup failed: {merged['setup_error']}", tests
    if merged.get("violation"):
        what = merged["violation"] if isinstance(merged["violation"], str) else \
            last_line(seen.stderr, "sandbox_violation") or str(merged.get("gone", ""))
        return "sandbox_violation", what[:300], tests
    cand_sig = merged.get("signal") or 0
    if cand_sig == signals.SIGXCPU:
        return "timeout", _progress("the code was stopped at the CPU-time limit", tests), tests
    if merged.get("memory") and ("load_error" in merged or merged.get("gone")):
        return "memory", "MemoryError: over the memory limit", tests
    if "load_error" in merged:
        return "crash", f"the code did not load: {merged['load_error']}", tests
    if "missing" in merged:
        return "fail", f"the code defines no function {merged['missing']!r}", tests
    how = f" (killed by {signal_name(cand_sig)})" if cand_sig else ""
    ends = [item for item in lines if "end" in item]
    if not ends:
        if merged.get("gone"):
            return "crash", f"the code's process ended while loading{how}", tests
        why = f"killed by {signal_name(sig)}" if sig is not None else "it ended early"
        return "crash", f"the test harness did not finish: {why}", tests
    if ends[-1]["end"] != seen.token:
        return "error", "the report does not carry this run's token", tests
    if ends[-1].get("gone"):
        return "crash", _progress(str(ends[-1]["gone"])[:200] + how, tests), tests
    if tests and all(tests):
        return "ok", "", tests
    return "fail", first_failure or "a test failed", tests
