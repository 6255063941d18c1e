"""Data parallel GRPO and RFT: 2 processes holding half the groups each == 1 process holding all.

Unit level (2 gloo processes via ``torch.multiprocessing``): the policy update, the SFT step and
the sharded rollouts give one process's weights, statistics and groups. End to end (``torchrun``):
a GRPO run on 2 ranks ends with one process's weights and metrics; an RFT run on 2 ranks finishes
and writes its summary once.
"""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reasonlab.config import ConfigError, load_config
from reasonlab.engine.sampler import SampleBatch, SamplingConfig
from reasonlab.models.checkpoint import load_checkpoint, save_checkpoint
from reasonlab.train.distributed import block_slice
from reasonlab.train.grpo import TIMING_KEYS, GRPOConfig, grpo
from reasonlab.train.policy_update import PAD_TO, UpdateSpec, update
from reasonlab.train.rft import RFTConfig, rft, sft_step
from reasonlab.train.rl_dist import generate_sharded, local_batch, map_sharded
from dist_helpers import on_ranks
from rl_helpers import random_groups, tiny_model

ROOT = Path(__file__).resolve().parents[1]
CASES = [("token", 5), ("sequence", 5), ("constant", 5), ("token", 1)]     # (aggregation, groups)
# The unit cases step with SGD, so a weight differs by what its gradient differs (float rounding
# of the sum over ranks, ~3e-7 of the largest element). Adam divides by sqrt(v): where a gradient
# element is ~0, that rounding moves the step by up to ~1/100 of the LR (end-to-end tolerance).
SGD_LR, ATOL, CLIP = 0.1, 1e-7, 0.1


# ---- running a function on 2 gloo processes -------------------------------------------------



# ---- the cases (each runs the same code on 1 process and on every rank) ---------------------

def grpo_updates() -> dict:
    """mu=2 clipped updates with a tight clip (it must act on the global gradient) for every
    aggregation on 5 groups (3/2 per rank, different token counts), and on 1 group (rank 1 holds
    none)."""
    out = {}
    for agg, p in CASES:
        model, tok = tiny_model()
        groups, adv = random_groups(p=p, g=4, seed=3)
        opt = torch.optim.SGD(model.parameters(), lr=SGD_LR)
        stats = update(model, None, opt, local_batch(groups, adv, tok.pad_id, PAD_TO),
                       UpdateSpec(micro_batch=8, autocast="none"), mu=2, aggregation=agg, grad_clip=CLIP)
        out[agg, p] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, stats)
    return out


def sft_steps() -> tuple[dict, list[float]]:
    """SFT steps on 3 pairs of different lengths (2/1 per rank) then on 1 pair (rank 1: none)."""
    model, tok = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=SGD_LR)
    pairs = [(tok.encode(f"x = {i}. What is x?"), tok.encode("</think>\n<answer>" + "7" * (i + 1) + "</answer>")
              + [tok.eos_id]) for i in range(4)]
    losses = [sft_step(model, opt, pairs[:3], CLIP), sft_step(model, opt, pairs[3:], CLIP)]
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, losses


def keyed_fake_sampler(prompts, scfg: SamplingConfig, keys=None) -> SampleBatch:
    """Rows that depend only on (seed, key, sample, prompt): a stand-in for ``engine.sampler``."""
    keys = range(len(prompts)) if keys is None else keys
    ids, reasons, index = [], [], []
    for p, (prompt, key) in enumerate(zip(prompts, keys)):
        for j in range(scfg.n):
            h = hash((scfg.seed, key, j, tuple(prompt))) & 0xFFFFFF
            ids.append([3 + (h >> t) % 50 for t in range(1 + h % scfg.max_new_tokens)])
            reasons.append("eos" if h % 3 == 0 else "length")
            index.append(p)
    return SampleBatch(index, prompts, ids, [[-0.1] * len(r) for r in ids], reasons)


def rollouts() -> list:
    """Three iterations of partial rollouts (5 new prompts each: 3/2 per rank) plus scoring."""
    buffer, out = [], []
    for it in range(3):
        new = [(i, [1, 2, 3 + i % 5]) for i in range(10 * it, 10 * it + 5)]
        done, pending, n_tok = generate_sharded(keyed_fake_sampler, buffer, new, 3,
                                                SamplingConfig(max_new_tokens=4, seed=it), max_tokens=9)
        scores = map_sharded(lambda g: sum(len(r.ids) for r in g.rows), done)
        out.append((_view(done), _view(pending), n_tok, scores))
        buffer = pending
    return out


def rft_collect() -> tuple[list, float]:
    """RFT sampling and verification of 4 problems (2 per rank) with a keyed stand-in sampler that
    answers right when ``key + sample`` is even, and not always with distinct texts."""
    from reasonlab.models.tokenizer import CharTokenizer
    from reasonlab.tasks import get_task
    from reasonlab.train.rft import collect_kept

    tok, task = CharTokenizer(), get_task("arith")
    problems = task.generate(4, seed=0, split="train", steps=1, max_operand=5, max_value=20)

    def sample_fn(prompts, scfg, keys=None):
        keys = range(len(prompts)) if keys is None else keys
        rows = [tok.encode(f"</think>\n<answer>{problems[k]['answer'] if (k + j) % 2 == 0 else -999}</answer>")
                + [j] * (k % 2) for k in keys for j in range(scfg.n)]
        return SampleBatch([p for p in range(len(prompts)) for _ in range(scfg.n)], prompts, rows,
                           [[0.0] * len(r) for r in rows], ["eos"] * len(rows))
    return collect_kept(sample_fn, tok, task, problems, RFTConfig(samples_per_prompt=3), seed=0)


def _view(groups) -> list:
    """A copy (later iterations extend the rows in place)."""
    return [(g.index, [(list(r.ids), r.finish, r.stale) for r in g.rows]) for g in groups]


def unit_cases() -> dict:
    return {"grpo": grpo_updates(), "sft": sft_steps(), "rollouts": rollouts(), "rft": rft_collect()}


# ---- unit-level tests -----------------------------------------------------------------------

def test_block_slice_splits_unevenly_and_matches_one_process():
    assert [block_slice(5, r, 2) for r in range(2)] == [slice(0, 3), slice(3, 5)]
    assert [block_slice(1, r, 2) for r in range(2)] == [slice(0, 1), slice(1, 1)]
    assert block_slice(7) == slice(0, 7)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The unit cases on one process and on 2 gloo processes (one spawn for all of them)."""
    ranks = on_ranks(unit_cases, tmp_path_factory.mktemp("ranks"))
    return unit_cases(), ranks


def _same_weights(a: dict, b: dict, rtol=1e-5, atol=ATOL) -> None:
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=rtol, atol=atol), (name, (a[name] - b[name]).abs().max())


@pytest.mark.parametrize("agg, groups", CASES)
def test_two_ranks_update_like_one_process(two_ranks, agg, groups):
    one, ranks = two_ranks
    weights, stats = one["grpo"][agg, groups]
    for r in ranks:
        _same_weights(weights, r["grpo"][agg, groups][0])
        assert r["grpo"][agg, groups][1] == pytest.approx(stats, rel=1e-5, abs=1e-7)
    a, b = (r["grpo"][agg, groups] for r in ranks)         # the ranks stay identical, bit for bit
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1] == b[1]
    assert stats["grad_norm"] > CLIP                   # the clip acted (on the global gradient)


def test_two_ranks_sft_like_one_process(two_ranks):
    one, ranks = two_ranks
    for r in ranks:
        _same_weights(one["sft"][0], r["sft"][0])
        assert r["sft"][1] == pytest.approx(one["sft"][1], rel=1e-5)
    assert all(torch.equal(ranks[0]["sft"][0][k], ranks[1]["sft"][0][k]) for k in ranks[0]["sft"][0])


def test_sharded_rollouts_give_one_process_groups(two_ranks):
    """Keys are global positions: continued rows and new prompts draw what one process draws, and
    the gathered groups come back in one process's order."""
    one, ranks = two_ranks
    assert any(step[1] for step in one["rollouts"]) and any(step[0] for step in one["rollouts"])
    for r in ranks:
        assert r["rollouts"] == one["rollouts"]


def test_rft_ranks_keep_what_one_process_keeps(two_ranks):
    one, ranks = two_ranks
    kept, stats = one["rft"]
    assert 0 < len(kept) < 12 and stats["accuracy"] == pytest.approx(6 / 12)
    assert all(r["rft"] == (kept, stats) for r in ranks)


def test_prompts_must_split_over_the_ranks(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="prompts_per_step: 3 prompts do not split evenly over 2 processes"):
        grpo(GRPOConfig(model="x", prompts_per_step=3), progress=False)
    with pytest.raises(ConfigError, match="prompts_per_round: 3 prompts do not split evenly over 2 processes"):
        rft(RFTConfig(model="x", prompts_per_round=3, train_pool=10), progress=False)


# ---- end to end under torchrun --------------------------------------------------------------

def _sampler_has_keys() -> bool:
    from reasonlab.engine.parallel import ParallelSampler
    from reasonlab.engine.sampler import sample

    return all("keys" in inspect.signature(f).parameters for f in (sample, ParallelSampler.sample))


def _torchrun(stage: str, args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "reasonlab.cli", stage, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


GRPO_ARGS = ["--steps=3", "--prompts_per_step=4", "--group_size=4",
             "--max_new_tokens=12", "--train_pool=64", "--eval_problems=2", "--eval_every=0", "--preflight=false",
             "--final_eval=false", "--autocast=none", "--sampler_dtype=float32", "--lr=0.003", "--micro_batch=6",
             "--rewards={accuracy: 1.0, length: 1.0}", "--grad_clip=0.5"]


VARIANTS = {
    # sampling on 1 worker per rank, gradients on the workers (ParallelGradients), then all-reduced
    "worker_gradients": ["--backend=parallel", "--workers=1"],
    # partial rollouts (groups buffered across steps), refills, curriculum, mu=2, sequence weights
    "partial_dynamic": ["--backend=local", "--segment_tokens=5", "--prompts.mode=curriculum",
                        "--prompts.dynamic=true", "--loss.mu=2", "--loss.aggregation=sequence"],
}


@pytest.mark.slow
@pytest.mark.skipif(not _sampler_has_keys(), reason="the sampler does not take per-prompt keys yet")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_torchrun_grpo_two_ranks_equals_one_process(tmp_path, variant):
    """~25 s each: one process in this one, then torchrun with 2 ranks."""
    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    common = [f"--model={tmp_path / 'm'}", f"--runs_dir={tmp_path}", *GRPO_ARGS, *VARIANTS[variant]]
    grpo(load_config(GRPOConfig, None, common + ["--name=one"]), progress=False)
    _torchrun("grpo", common + ["--name=two"])
    logs = {n: [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
                for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in ("one", "two")}
    assert [r["step"] for r in logs["two"]] == [1, 2, 3]
    assert any(r.get("grad_norm", 0) > 0 for r in logs["one"])
    for a, b in zip(logs["one"], logs["two"]):
        assert a.keys() == b.keys() and a == pytest.approx(b, rel=1e-5, abs=1e-6)
    one, _, _ = load_checkpoint(tmp_path / "one" / "model")
    two, _, _ = load_checkpoint(tmp_path / "two" / "model")
    _same_weights(one.state_dict(), two.state_dict(), rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2
    assert "world_size" not in json.loads((tmp_path / "one" / "run.json").read_text())


def test_torchrun_rft_two_ranks_finishes_and_writes_once(tmp_path):
    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    _torchrun("rft", [f"--model={tmp_path / 'm'}", f"--runs_dir={tmp_path}", "--backend=local", "--rounds=2",
                      "--prompts_per_round=2", "--samples_per_prompt=2", "--max_new_tokens=8", "--train_pool=20",
                      "--eval_problems=2", "--eval_n=2", "--final_eval=false", "--sampler_dtype=float32"])
    rows = [json.loads(line) for line in (tmp_path / "rft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[-1]["samples"] == 8
    assert "heldout_pass@1" in rows[0]                 # held-out evaluation on rank 0
    summary = json.loads((tmp_path / "rft" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["samples"] == 8
    assert (tmp_path / "rft" / "model" / "model.safetensors").exists()
