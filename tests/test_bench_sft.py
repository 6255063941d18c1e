"""`reasonlab bench sft`: ours and TRL's SFTTrainer train the same documents on the same weights
and report tokens/s, a ratio and losses that agree (same data, lr and optimiser)."""
import importlib.util
import math

import pytest

from reasonlab.bench.common import BenchConfig, run_bench
from reasonlab.models.llama import LlamaConfig

HAS_TRL = importlib.util.find_spec("trl") is not None
TINY = dict(d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=64)


def tiny_bench(**kw) -> dict:
    cfg = BenchConfig(what="sft", json=True, batch_size=4, seq_len=200, steps=1, repeats=1,
                      model_cfg=LlamaConfig(**TINY), **kw)
    return run_bench(cfg)


@pytest.mark.slow
def test_bench_sft_runs_both_sides():
    out = tiny_bench(trl=HAS_TRL)
    assert out["bench"] == "sft" and out["documents_per_step"] == 4 and out["steps_per_round"] == 1
    assert out["packing"] is True and out["seq_len"] == 200 and out["tokens_per_step"] > 0
    assert out["ours_tokens_per_s"] > 0 and 0 < out["ours_rows_per_step"] <= 4
    assert math.isfinite(out["ours_loss_first"]) and math.isfinite(out["ours_loss_last"])
    if not HAS_TRL:                                    # trl absent: our side alone, said so
        assert out["trl"].startswith("skipped")
        return
    assert out["trl_tokens_per_s"] > 0 and out["trl_best"] in ("trl_padding_free", "trl_padded")
    assert out["ratio"] == pytest.approx(out["ours_tokens_per_s"] / out["trl_tokens_per_s"], rel=0.05)
    assert out["trl_options"]["completion_only_loss"] is True and out["trl_version"]
    for side in ("trl_padding_free", "trl_padded"):
        assert out[f"{side}_tokens_per_s"] > 0
        # same weights, same documents: the first (warm-up) step's loss is the same computation
        assert out[f"{side}_loss_first"] == pytest.approx(out["ours_loss_first"], rel=1e-2)
        assert math.isfinite(out[f"{side}_loss_last"])


def test_bench_sft_without_trl_reports_why():
    out = tiny_bench(trl=False)
    assert out["trl"] == "skipped: --trl=false" and "ratio" not in out
    assert out["ours_tokens_per_s"] > 0
