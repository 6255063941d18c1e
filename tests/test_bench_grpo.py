"""`reasonlab bench grpo`: both sides run real GRPO steps on the same weights and report a ratio."""
import pytest

pytest.importorskip("trl")


@pytest.mark.slow
def test_bench_grpo_runs_both_sides():
    from reasonlab.bench.common import BenchConfig, run_bench
    from reasonlab.models.llama import LlamaConfig

    cfg = BenchConfig(what="grpo", json=True, prompts=2, n=2, new_tokens=8, steps=1, repeats=1, workers=1,
                      model_cfg=LlamaConfig(d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=64))
    out = run_bench(cfg)
    assert out["bench"] == "grpo" and out["completions_per_step"] == 4
    assert out["ours_completions_per_s"] > 0 and out["trl_completions_per_s"] > 0
    assert out["ratio"] == pytest.approx(out["ours_completions_per_s"] / out["trl_completions_per_s"], rel=0.05)
