"""FSDP2 (``train.fsdp``): a sharded policy takes the steps of plain data parallel and of one process.

Unit level (2 gloo processes via ``torch.multiprocessing``): GRPO updates (a rank with more
micro-batches than the other, a rank with none, mu=2, a tight clip), RFT's SFT step, a tied
embedding, gradient checkpointing and the optimiser state of a checkpoint, each with and without
``shard_model``, compared with one process. End to end (``torchrun``): a 2-step GRPO run with
``--fsdp=true`` finishes, writes a ``model/`` that ``load_policy`` loads, and matches one process.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reasonlab.config import ConfigError, load_config
from reasonlab.models.checkpoint import save_checkpoint
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.train.distributed import agree
from reasonlab.train.fsdp import (
    full_model,
    is_sharded,
    load_optimizer_state,
    optimizer_state,
    shard_model,
    sharded_sft_step,
)
from reasonlab.train.grpo import TIMING_KEYS, GRPOConfig, grpo, load_policy
from reasonlab.train.policy_update import PAD_TO, UpdateSpec, update
from reasonlab.train.precision import workers_can_compute_gradients
from reasonlab.train.rl_dist import local_batch
from reasonlab.train.sft import sft_step
from dist_helpers import on_ranks
from rl_helpers import random_groups, tiny_model

ROOT = Path(__file__).resolve().parents[1]
# (aggregation, groups, mu): 5 groups = 3/2 per rank (20/12 rows: 3 vs 2 micro-batches of 8),
# 1 group = rank 1 holds none (it runs idle passes)
CASES = [("token", 5, 2), ("sequence", 5, 1), ("token", 1, 1)]
SGD_LR, CLIP = 0.1, 0.1




def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in full_model(model).state_dict().items()}


def _model(fsdp: bool, tied: bool = False, checkpointing: bool = False):
    model, tok = tiny_model()
    if tied:
        torch.manual_seed(1)
        model = Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2,
                                  d_ff=64, max_seq_len=256, tie_embeddings=True))
    model.grad_checkpointing = checkpointing
    return (shard_model(model) if fsdp else model), tok


def _grpo(fsdp: bool, agg: str, p: int, mu: int, opt_cls=torch.optim.SGD, **model_kw):
    model, tok = _model(fsdp, **model_kw)
    groups, adv = random_groups(p=p, g=4, seed=3)
    opt = opt_cls(model.parameters(), lr=SGD_LR if opt_cls is torch.optim.SGD else 1e-3)
    batch = local_batch(groups, adv, tok.pad_id, PAD_TO)
    stats = update(model, None, opt, batch, UpdateSpec(micro_batch=8, autocast="none"), mu=mu, aggregation=agg,
                   grad_clip=CLIP)
    return model, opt, batch, stats


def _sft(fsdp: bool):
    model, tok = _model(fsdp)
    opt = torch.optim.SGD(model.parameters(), lr=SGD_LR)
    pairs = [(tok.encode(f"x = {i}. What is x?"), tok.encode("</think>\n<answer>" + "7" * (i + 1) + "</answer>")
              + [tok.eos_id]) for i in range(4)]
    step = sharded_sft_step if is_sharded(model) else sft_step
    losses = [step(model, opt, pairs[:3], CLIP), step(model, opt, pairs[3:], CLIP)]     # rank 1: none, then none
    return _weights(model), losses


def _resumed() -> tuple[dict, dict]:
    """AdamW: 2 updates in a row vs 1 update, checkpoint (full weights + full optimiser state,
    rank 0's, as every rank reads it from disk), a fresh sharded model, 1 more update."""
    model, opt, batch, _ = _grpo(True, "token", 5, 1, torch.optim.AdamW)
    saved_w, saved_opt = _weights(model), agree(optimizer_state(model, opt))
    spec = UpdateSpec(micro_batch=8, autocast="none")
    update(model, None, opt, batch, spec, grad_clip=CLIP)
    fresh, _ = tiny_model()
    fresh.load_state_dict(saved_w)
    fresh = shard_model(fresh)
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    load_optimizer_state(fresh, opt2, saved_opt)
    update(fresh, None, opt2, batch, spec, grad_clip=CLIP)
    return _weights(model), _weights(fresh)


def cases() -> dict:
    """Every case with plain data parallel ("dp") and FSDP ("fsdp"); on one process only "dp"
    (``shard_model`` is a no-op there, checked separately)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    out = {"sharded": is_sharded(_model(True)[0])}
    for mode in ("dp", "fsdp") if world > 1 else ("dp",):
        fsdp = mode == "fsdp"
        for agg, p, mu in CASES:
            model, _, _, stats = _grpo(fsdp, agg, p, mu)
            out[mode, agg, p, mu] = (_weights(model), stats)
        model, _, _, stats = _grpo(fsdp, "token", 5, 1, tied=True)
        full = full_model(model)
        out[mode, "tied"] = (_weights(model), stats, full.embed.weight is full.lm_head.weight)
        model, _, _, stats = _grpo(fsdp, "token", 5, 1, checkpointing=True)
        out[mode, "checkpointing"] = (_weights(model), stats)
        out[mode, "sft"] = _sft(fsdp)
    if world > 1:
        out["resume"] = _resumed()
        out["workers"] = workers_can_compute_gradients(_model(True)[0])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return cases(), on_ranks(cases, tmp_path_factory.mktemp("ranks"))


def _close(a: dict, b: dict, rtol=1e-5, atol=1e-7) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=rtol, atol=atol), (name, (a[name] - b[name]).abs().max())


KEYS = [(agg, p, mu) for agg, p, mu in CASES] + ["tied", "checkpointing"]


@pytest.mark.parametrize("key", KEYS, ids=str)
def test_fsdp_update_equals_data_parallel_and_one_process(runs, key):
    one, ranks = runs
    key = key if isinstance(key, tuple) else (key,)
    want_w, want_stats = one[("dp", *key)][:2]
    for r in ranks:
        for mode in ("dp", "fsdp"):
            w, stats = r[(mode, *key)][:2]
            _close(want_w, w)
            assert stats == pytest.approx(want_stats, rel=1e-5, abs=1e-7)
        _close(r[("dp", *key)][0], r[("fsdp", *key)][0])
    assert all(torch.equal(ranks[0][("fsdp", *key)][0][k], ranks[1][("fsdp", *key)][0][k]) for k in want_w)
    assert want_stats["grad_norm"] > CLIP                               # the clip acted on the global gradient


def test_fsdp_keeps_tied_embeddings_tied(runs):
    one, ranks = runs
    assert all(r["fsdp", "tied"][2] for r in ranks) and one["dp", "tied"][2]


def test_fsdp_sft_step_equals_data_parallel_and_one_process(runs):
    one, ranks = runs
    for r in ranks:
        for mode in ("dp", "fsdp"):
            _close(one["dp", "sft"][0], r[mode, "sft"][0])
            assert r[mode, "sft"][1] == pytest.approx(one["dp", "sft"][1], rel=1e-5)


def test_fsdp_checkpointed_optimizer_state_resumes_exactly(runs):
    _, ranks = runs
    for r in ranks:
        _close(*r["resume"], rtol=1e-6, atol=1e-8)


def test_fsdp_is_a_no_op_on_one_process_and_disables_worker_gradients(runs):
    one, ranks = runs
    assert one["sharded"] is False and all(r["sharded"] for r in ranks)
    assert not any(r["workers"] for r in ranks)


def test_fsdp_with_lora_is_a_config_error():
    with pytest.raises(ConfigError, match="fsdp: LoRA adapters cannot be trained with fsdp"):
        grpo(GRPOConfig(model="x", fsdp=True, lora_rank=4), progress=False)


# ---- end to end under torchrun --------------------------------------------------------------

GRPO_ARGS = ["--steps=2", "--prompts_per_step=4", "--group_size=4", "--max_new_tokens=12", "--train_pool=64",
             "--eval_problems=2", "--eval_every=0", "--preflight=false", "--final_eval=false", "--autocast=none",
             "--sampler_dtype=float32", "--lr=0.003", "--micro_batch=6", "--backend=local",
             "--rewards={accuracy: 1.0, length: 1.0}", "--grad_clip=0.5"]


@pytest.mark.slow
def test_torchrun_grpo_fsdp_runs_and_saves_full_weights(tmp_path):
    """~30 s: torchrun with 2 ranks and --fsdp=true, then one process (the same run)."""
    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    common = [f"--model={tmp_path / 'm'}", f"--runs_dir={tmp_path}", *GRPO_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "reasonlab.cli", "grpo", "--name=fsdp", "--fsdp=true", *common], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "fsdp"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and any(r.get("grad_norm", 0) > 0 for r in rows)
    assert json.loads((run / "run.json").read_text())["config"]["fsdp"] is True
    trained, _ = load_policy(str(run / "model"))
    assert type(trained) is Llama
    before = model.state_dict()
    after = trained.state_dict()
    assert after.keys() == before.keys() and all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)           # it trained
    assert (run / "checkpoint" / "trainer_state.pt").exists()
    grpo(load_config(GRPOConfig, None, common + ["--name=one"]), progress=False)        # one process
    one = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(one, rows):
        a, b = ({k: v for k, v in r.items() if k not in TIMING_KEYS} for r in (a, b))
        assert a.keys() == b.keys() and a == pytest.approx(b, rel=1e-5, abs=1e-6)
    _close(load_policy(str(tmp_path / "one" / "model"))[0].state_dict(), after, atol=1e-6)
