"""Shared check of the adversarial verifier suites: the expected verdict, within a time bound."""
import time


def assert_verdict(task, row: dict, completion: str, correct: bool, reason: str, bound_s: float):
    """``task.verify(row, completion)`` gives ``(correct, reason)`` in under ``bound_s`` seconds."""
    start = time.perf_counter()
    verdict = task.verify(row, completion)
    in_time = time.perf_counter() - start < bound_s
    assert (verdict.correct, verdict.reason, in_time) == (correct, reason, True), verdict
    return verdict
