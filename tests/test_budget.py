"""Budget curves (subsampling, intervals, compute) and the sweep end to end on a tiny model."""
import numpy as np
import pytest
import torch

from reasonlab.eval import budget
from reasonlab.eval.metrics import maj_at_k, pass_at_k


def samples(seed=0, p=30, n=8):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(p):
        keys = [str(k) for k in rng.integers(0, 3, n)]
        correct = [k == "0" for k in keys]
        out.append(budget.ProblemSamples(keys, correct, rng.integers(10, 30, n).tolist(), 50,
                                         {"orm": rng.random(n).tolist(), "prm": rng.random(n).tolist(),
                                          "oracle": [float(c) for c in correct]}))
    return out


def test_budgets_and_subsets():
    assert budget.budgets(64) == [1, 2, 4, 8, 16, 32, 64]
    rng = np.random.default_rng(0)
    assert budget.subsets(8, 2, 100, rng).shape == (28, 2)                # all C(8,2) subsets
    assert budget.subsets(64, 16, 100, rng).shape == (100, 16)


def test_majority_and_pass_curves_match_the_metrics():
    data = samples()
    maj = {p["n"]: p for p in budget.curve(data, "majority", 8, count=10_000)}
    for n in (1, 2, 8):
        ref = np.mean([maj_at_k(ps.keys, ps.correct, n, n_resamples=10_000, rng=np.random.default_rng(0))
                       for ps in data])
        assert maj[n]["accuracy"] == pytest.approx(ref)
    pk = {p["n"]: p for p in budget.curve(data, "pass@k", 8)}
    assert pk[4]["accuracy"] == pytest.approx(np.mean([pass_at_k(8, sum(ps.correct), 4) for ps in data]))
    assert pk[4]["verifier_tokens"] == 0 and pk[4]["ci"][0] <= pk[4]["accuracy"] <= pk[4]["ci"][1]


def test_compute_counts_policy_and_verifier_tokens():
    data = samples()
    pts = {p["n"]: p for p in budget.curve(data, "best_of_n_orm", 8, wall_s=8.0)}
    full = np.mean([ps.prompt_tokens + sum(ps.lengths) for ps in data])
    assert pts[8]["policy_tokens"] == pytest.approx(full) and pts[8]["verifier_tokens"] == pytest.approx(full)
    assert pts[8]["tokens"] == pytest.approx(2 * full) and pts[4]["wall_s"] == pytest.approx(4.0)
    assert pts[1]["policy_tokens"] < pts[2]["policy_tokens"] < pts[8]["policy_tokens"]


def test_oracle_best_of_n_is_pass_at_n_and_bars_are_paired():
    data = samples()
    oracle = {p["n"]: p for p in budget.curve(data, "best_of_n_oracle", 8, count=10_000)}
    pk = {p["n"]: p for p in budget.curve(data, "pass@k", 8)}
    assert oracle[8]["accuracy"] == pytest.approx(pk[8]["accuracy"])
    per = {("majority", 16): [1.0, 1.0, 0.0, 1.0], ("pass@k", 1): [0.5, 0.5, 0.0, 0.5],
           ("best_of_n_prm", 16): [1.0, 0.0, 0.0, 1.0]}
    bars = budget.bars(per)
    first = bars["maj@16 >= pass@1 + 0.10"]
    assert first["difference"] == pytest.approx(0.375) and first["passed"]
    assert not bars["best_of_16_prm >= maj@16 - 0.02"]["passed"]


def test_markdown_and_plot(tmp_path):
    pts = budget.curve(samples(), "majority", 8) + [budget.search_point("beam_search", 4, [True, False], [100, 120],
                                                                        [90, 95], 1.5)]
    for p in pts:
        p.pop("per_problem", None)
    table = budget.markdown_table(pts)
    assert table.count("\n") == len(pts) + 2 and "| beam_search | 4 |" in table
    path = budget.plot_budget(pts, tmp_path / "a.png")
    assert path.stat().st_size > 1000


@pytest.mark.slow
def test_eval_methods_runs_the_sweep_end_to_end(tmp_path):
    from reasonlab.eval.run import EvalConfig, evaluate
    from reasonlab.io import read_json, read_jsonl
    from reasonlab.models.checkpoint import save_checkpoint
    from reasonlab.models.llama import Llama, LlamaConfig
    from reasonlab.models.tokenizer import CharTokenizer
    from reasonlab.verifiers.value_model import make_value_model, save_value_model

    tok = CharTokenizer()
    torch.manual_seed(0)
    policy = Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64))
    save_checkpoint(tmp_path / "policy", policy, tok)
    for kind in ("orm", "prm"):
        save_value_model(tmp_path / "ver" / kind, make_value_model(policy), tok, {"kind": kind})
    cfg = EvalConfig(name="s", runs_dir=str(tmp_path / "runs"), model=str(tmp_path / "policy"), limit=3, n=4,
                     ks=[1, 4], max_new_tokens=12, verifiers=str(tmp_path / "ver"),
                     generate={"steps": [1, 2], "max_operand": 9, "max_value": 50},
                     methods=["pass@k", "majority", "best_of_n_prm", "weighted_vote_orm", "cot_decoding",
                              "beam_search", "dvts", "mcts"])
    summary = evaluate(cfg, progress=False)
    run = tmp_path / "runs" / "s"
    assert {p["method"] for p in summary["points"]} == set(cfg.methods)
    assert len(read_jsonl(run / "results.jsonl")) == 3 and read_json(run / "summary.json")["n_max"] == 4
    assert (run / "accuracy_vs_tokens.png").exists() and (run / "table.md").exists()
    trees = read_jsonl(run / "trees.jsonl")                   # beam search, dvts and mcts, 3 problems each
    assert len(trees) == 9 and {t["method"] for t in trees} == {"beam_search", "dvts", "mcts"}
