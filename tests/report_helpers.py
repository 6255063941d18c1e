"""Run directories in the formats the stages write, for the report tests: a pretraining run, a
GRPO run (with logged rollouts), a sweep (with search trees) and a broken run. Completions carry
known verdicts; two of them try to inject script into the page."""
import json
from pathlib import Path

XSS = "<script>window.__xss = 1</script>"
XSS_IMG = '<img src=x onerror="window.__xss = 2">'


def _jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _metrics(p1: float) -> dict:
    return {"n_problems": 3, "n_samples": 2, "ks": [1, 2], "pass@1": p1, "pass@1_ci": [p1 - 0.1, p1 + 0.1],
            "pass@2": p1 + 0.1, "pass@2_ci": [p1, p1 + 0.2], "maj@1": p1, "maj@2": p1 + 0.05,
            "maj@2_ci": [p1 - 0.05, p1 + 0.15], "no_answer_rate": 0.1, "mean_length": 30.5,
            "verdicts": {"ok": 3, "wrong": 2, "no_answer": 1}}


def _eval_row(i: int, answer: str, samples: list[tuple[str, bool, str | None]]) -> dict:
    """A results.jsonl row of ``reasonlab eval``; samples: (completion, correct, parsed)."""
    return {"id": f"arith-test-{i}", "question": f"a = {i}, b = 2. c = a + b. What is c?", "answer": answer,
            "completions": [s[0] for s in samples], "lengths": [len(s[0]) for s in samples],
            "finish_reasons": ["eos"] * len(samples), "correct": [s[1] for s in samples],
            "parsed": [s[2] for s in samples], "keys": [s[2] for s in samples],
            "reasons": ["ok" if s[1] else ("wrong" if s[2] is not None else "no_answer") for s in samples]}


def _done(x: int) -> str:
    return f"c = a + b = {x}\n</think>\n<answer>{x}</answer>"


def _pretrain(run: Path) -> list[dict]:
    from reasonlab.eval.plots import plot_curves

    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"stage": "pretrain", "steps": 50, "train_seconds": 12.5,
                                                  "params": 841600, "eval": {"task": "arith", "n": 2,
                                                                             "metrics": _metrics(0.45)},
                                                  "git_rev": "abcdef1234567", "torch": "2.13.0"}))
    _jsonl(run / "train_log.jsonl", [{"step": s, "loss": 3.0 / s, "lr": 1e-3, "tokens_per_s": 1e4, "elapsed_s": s}
                                     for s in range(10, 60, 10)] + [{"step": 50, "heldout_greedy_acc": 0.4}])
    plot_curves({"train loss": ([10, 20, 30], [3.0, 1.5, 1.0])}, run / "loss.png", xlabel="step", ylabel="loss")
    rows = [_eval_row(1, "3", [(_done(3), True, "3"), (_done(4), False, "4")]),
            _eval_row(2, "4", [(_done(4), True, "4"), ("c = a + b = 4\n</think> no tag", False, None)]),
            _eval_row(3, "5", [(_done(6), False, "6"), (_done(5), True, "5")])]
    _jsonl(run / "results.jsonl", rows)
    return rows


def _grpo(run: Path) -> list[dict]:
    from reasonlab.eval.plots import plot_curves

    run.mkdir(parents=True)
    metrics = [{"step": s, "reward": 0.3 + s / 50, "accuracy": 0.2 + s / 50, "length_mean": 40 - s / 2,
                "length_p90": 50.0, "entropy": 0.1, "loss": 0.01, "groups_scored": 4} for s in range(1, 21)]
    metrics[9]["heldout_pass@1"], metrics[19]["heldout_pass@1"] = 0.5, 0.6
    _jsonl(run / "metrics.jsonl", metrics)
    _jsonl(run / "samples.jsonl", [
        {"step": s, "id": f"arith-train-{s}-{j}", "question": f"a = {s}. What is a?", "answer": str(s),
         "completion": (XSS if j else "") + _done(s if j else s + 1), "reward": 1.1 if j else 0.1, "correct": bool(j),
         "parsed": str(s if j else s + 1)} for s in (1, 10, 20) for j in (0, 1)])
    (run / "summary.json").write_text(json.dumps({"stage": "grpo", "steps": 20, "samples": 640, "train_seconds": 30.0,
                                                  "last": metrics[-1], "eval": {"metrics": _metrics(0.6)}}))
    plot_curves({"reward": ([1, 2, 3], [0.3, 0.4, 0.5])}, run / "reward.png", xlabel="step", ylabel="reward")
    rows = [_eval_row(1, "3", [(XSS + _done(4), False, "4"), (_done(3), True, "3")]),
            _eval_row(2, "4", [(XSS_IMG + " no answer", False, None), (_done(4), True, "4")])]
    _jsonl(run / "results.jsonl", rows)
    return rows


def _sweep(run: Path) -> list[dict]:
    run.mkdir(parents=True)
    points = [{"method": m, "n": n, "accuracy": a + n / 100, "ci": [a - 0.05, a + 0.05], "tokens": 80.0 * n}
              for m, a in (("pass@k", 0.5), ("majority", 0.45), ("beam_search", 0.4)) for n in (1, 4, 16)]
    (run / "summary.json").write_text(json.dumps({
        "stage": "sweep", "n_problems": 1, "n_max": 16, "points": points, "timings": {"total_s": 5.0},
        "bars": {"maj@16 >= pass@1 + 0.10": {"value": 0.61, "baseline": 0.51, "difference": 0.1, "ci": [0.05, 0.15],
                                             "passed": True}}}))
    search = {f"{m}@16": {"answer": "3", "correct": True, "policy_tokens": 100, "verifier_tokens": 90}
              for m in ("beam_search", "dvts", "mcts")}
    rows = [{"id": "arith-test-1", "question": "a = 1, b = 2. c = a + b. What is c?", "answer": "3",
             "completions": [_done(3), _done(3), _done(2)], "keys": ["3", "3", "2"], "correct": [True, True, False],
             "lengths": [30, 30, 30], "scores": {}, "search": search}]
    _jsonl(run / "results.jsonl", rows)
    step = [{"parent": -1, "group": 0, "text": "c = a + b = 3\n", "score": 0.8, "done": False},
            {"parent": -1, "group": 0, "text": "c = a + b = 3\n", "score": 0.8, "done": False},
            {"parent": 0, "group": 0, "text": "</think>\n<answer>3</answer>", "score": 0.9, "done": True},
            {"parent": 1, "group": 0, "text": XSS, "score": 0.1, "done": True}]
    mcts = [{"parent": -1, "text": "", "visits": 4, "q": 0.5, "score": None, "done": False},
            {"parent": 0, "text": "c = a + b = 3\n", "visits": 3, "q": 0.7, "score": 0.8, "done": False},
            {"parent": 0, "text": "c = a + b = 2\n", "visits": 1, "q": 0.1, "score": 0.05, "done": False}]
    _jsonl(run / "trees.jsonl", [{"id": "arith-test-1", "method": m, "n": 16, "tree": t}
                                 for m, t in (("beam_search", step), ("dvts", step), ("mcts", mcts))])
    return rows


def _broken(run: Path) -> list[dict]:
    run.mkdir(parents=True)
    (run / "summary.json").write_text("{not json")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo\n')
    (run / "fake.png").write_bytes(b"GIF89a not a png")
    row = _eval_row(9, "1", [("I do not know", False, None)])
    (run / "results.jsonl").write_text("[1, 2]\n" + json.dumps(row) + "\n")
    return [row]


def make_runs(root: Path, samples_per_problem: int = 4) -> dict:
    """The four run directories under ``root``; returns the verdict counts of the completions
    the trace browser shows (``all``, ``correct``, ``wrong``, ``none``), per run too, and the
    number of real PNGs."""
    counts = {"all": 0, "correct": 0, "wrong": 0, "none": 0}
    per_run = {}
    for name, make in (("pre", _pretrain), ("rl", _grpo), ("sw", _sweep), ("broken", _broken)):
        rows = make(root / name)
        per_run[name] = 0
        for row in rows:
            parsed = row.get("parsed", row.get("keys"))
            for ok, key in list(zip(row["correct"], parsed))[:samples_per_problem]:
                verdict = "correct" if ok else ("none" if key is None else "wrong")
                counts[verdict] += 1
                counts["all"] += 1
                per_run[name] += 1
    return {"counts": counts, "per_run": per_run, "pngs": 2}
