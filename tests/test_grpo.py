"""GRPO loop pieces on a tiny random model: updates, accumulation, partial rollouts, preflight."""
import copy
import json

import pytest
import torch

from reasonlab.config import ConfigError, load_config
from reasonlab.engine.sampler import SampleBatch, SamplingConfig
from reasonlab.models.checkpoint import save_checkpoint
from reasonlab.train import rl
from reasonlab.train.grpo import GRPOConfig, LossConfig, grpo, update
from reasonlab.train.logprobs import completion_logprobs
from reasonlab.train.rl_monitor import PreflightError, preflight
from reasonlab.train.rollout import Group, Row, batch_tensors, generate
from rl_helpers import random_groups, tiny_model


def cfg_for(**kw):
    loss = LossConfig(**{k: kw.pop(k) for k in list(kw) if k in LossConfig.__dataclass_fields__})
    return GRPOConfig(model="x", loss=loss, autocast="none", **kw)


def test_one_step_changes_every_trainable_parameter():
    model, tok = tiny_model()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    groups, adv = random_groups()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = update(model, None, opt, batch_tensors(groups, adv, tok.pad_id), cfg_for())
    unchanged = [k for k, v in model.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    assert stats["clip_frac"] == 0.0 and stats["entropy"] > 0 and stats["grad_norm"] > 0


@pytest.mark.parametrize("aggregation", ["token", "sequence", "constant"])
def test_accumulation_invariance(aggregation):
    """One batch of 8 rows == 8 accumulated micro-batches of 1 (same gradient, same step)."""
    model, tok = tiny_model()
    other = copy.deepcopy(model)
    groups, adv = random_groups(p=2, g=4)
    batch = batch_tensors(groups, adv, tok.pad_id)
    grads = []
    for m, micro in ((model, 8), (other, 1)):
        opt = torch.optim.SGD(m.parameters(), lr=0.0)
        update(m, None, opt, batch, cfg_for(aggregation=aggregation, micro_batch=micro, grad_clip=0.0))
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_kl_term_with_reference_and_mu_two_clips():
    model, tok = tiny_model()
    ref = copy.deepcopy(tiny_model(seed=1)[0])
    groups, adv = random_groups()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    stats = update(model, ref, opt, batch_tensors(groups, adv, tok.pad_id), cfg_for(beta=0.1, mu=3))
    assert stats["kl"] > 0                      # a different reference model: KL is positive
    assert stats["clip_frac"] > 0               # with a large LR, later epochs leave the trust region


def test_stale_tokens_use_sampler_logprobs():
    model, tok = tiny_model()
    groups, adv = random_groups()
    for g in groups:
        for r in g.rows:
            r.stale, r.logprobs = len(r.ids), [-20.0] * len(r.ids)   # very unlikely under the old policy
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = update(model, None, opt, batch_tensors(groups, adv, tok.pad_id), cfg_for())
    assert stats["clip_frac"] > 0.3             # huge ratios: the clipped branch is taken


def test_batch_tensors_alignment():
    groups = [Group(0, [5, 6, 7], [Row(ids=[8, 9], logprobs=[-0.1, -0.2], finish="eos", stale=1)]),
              Group(1, [4], [Row(ids=[3], logprobs=[-0.3], finish="eos")])]
    b = batch_tensors(groups, torch.tensor([[1.5], [-1.0]]), pad_id=0)
    assert b["prompt_ids"].tolist() == [[5, 6, 7], [4, 0, 0]] and b["prompt_len"].tolist() == [3, 1]
    assert b["ids"].tolist() == [[8, 9], [3, 0]] and b["group"].tolist() == [0, 1]
    assert b["mask"].tolist() == [[True, True], [True, False]]
    assert b["stale"].tolist() == [[True, False], [False, False]]
    assert b["behavior"][0].tolist() == pytest.approx([-0.1, -0.2])
    assert b["adv"].tolist() == [1.5, -1.0]


def test_grouped_logprobs_equal_full_sequence_forward():
    """Each prompt encoded once per group gives the same log-probs as [prompt ; completion]."""
    model, tok = tiny_model()
    groups, adv = random_groups(p=3, g=3, seed=2)
    groups.sort(key=lambda g: -max(len(r.ids) for r in g.rows))    # the order batch_tensors uses
    b = batch_tensors(groups, adv, tok.pad_id)
    args = {k: b[k] for k in ("prompt_ids", "prompt_len", "ids", "group")}
    lp, ent = completion_logprobs(model, **args, with_entropy=True)

    class Plain(torch.nn.Module):                   # the generic path (any logits module)
        def forward(self, x):
            return model(x)
    lp2, ent2 = completion_logprobs(Plain(), **args, with_entropy=True)
    m = b["mask"]
    assert torch.allclose(lp[m], lp2[m], atol=1e-5) and torch.allclose(ent[m], ent2[m], atol=1e-5)
    for i, (gi, row) in enumerate((gi, r) for gi, g in enumerate(groups) for r in g.rows):
        seq = torch.tensor([groups[gi].prompt_ids + row.ids])
        ref = rl.token_logprobs(model, seq)[0, len(groups[gi].prompt_ids) - 1:]
        assert torch.allclose(lp[i, : len(row.ids)], ref, atol=1e-5)


def scripted_sampler(calls):
    """Each prompt's rows get 4 tokens (token = 10 + call number); finishes with "length"."""
    def sample_fn(prompts, scfg):
        calls.append([list(p) for p in prompts])
        n, k = scfg.n, len(calls)
        rows = [[10 + k] * min(4, scfg.max_new_tokens) for _ in prompts for _ in range(n)]
        return SampleBatch([i for i in range(len(prompts)) for _ in range(n)], prompts, rows,
                           [[-0.5] * len(r) for r in rows], ["length"] * len(rows))
    return sample_fn


def test_partial_rollouts_continue_unfinished_rows():
    calls = []
    fn = scripted_sampler(calls)
    scfg = SamplingConfig(max_new_tokens=4)
    done, pending, n = generate(fn, [], [(0, [1, 2])], 2, scfg, max_tokens=10)
    assert not done and len(pending) == 1 and n == 8
    done, pending, n = generate(fn, pending, [], 2, scfg, max_tokens=10)
    assert calls[1] == [[1, 2, 11, 11, 11, 11]] * 2              # prompt + what each row wrote
    assert not done and pending[0].rows[0].stale == 4
    done, pending, n = generate(fn, pending, [], 2, scfg, max_tokens=10)
    assert not pending and n == 4                                # cut at max_tokens = 10
    row = done[0].rows[0]
    assert row.ids == [11] * 4 + [12] * 4 + [13] * 2 and row.finish == "length" and row.stale == 8


def test_preflight_messages():
    eos = [Group(0, [1], [Row(ids=[3], finish="eos"), Row(ids=[4], finish="eos")])]
    trunc = [Group(0, [1], [Row(ids=[3], finish="length")] * 2)]
    with pytest.raises(PreflightError, match="no completion terminated.*max_new_tokens"):
        preflight(trunc, {"accuracy": [0, 0]}, [[0.0, 0.0]], [None, None])
    with pytest.raises(PreflightError, match="could parse.*template"):
        preflight(eos, {"accuracy": [0, 0]}, [[0.0, 0.0]], [None, None])
    with pytest.raises(PreflightError, match="zero reward variance.*curriculum"):
        preflight(eos, {"accuracy": [1, 1]}, [[1.0, 1.0]], ["4", "4"])
    preflight(eos, {"accuracy": [1, 0]}, [[1.0, 0.0]], ["4", "5"])     # healthy: no error


def test_grpo_preflight_stops_a_random_model(tmp_path):
    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    cfg = load_config(GRPOConfig, None, [f"--model={tmp_path / 'm'}", f"--runs_dir={tmp_path}", "--backend=local",
                                         "--max_new_tokens=8", "--train_pool=50", "--eval_problems=4",
                                         "--prompts_per_step=2", "--group_size=2"])
    with pytest.raises(PreflightError, match="no completion terminated"):
        grpo(cfg, progress=False)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="loss.advantage: unknown value 'ppo'.*dr_grpo, grpo, rloo"):
        grpo(GRPOConfig(model="x", loss=LossConfig(advantage="ppo")), progress=False)
    with pytest.raises(ConfigError, match="group_size"):
        grpo(GRPOConfig(model="x", group_size=1), progress=False)


@pytest.mark.slow
def test_parallel_sampler_refresh_gives_workers_the_new_weights():
    from reasonlab.engine.parallel import ParallelSampler
    from reasonlab.engine.sampler import sample
    from reasonlab.engine.tiny import LlamaRunner

    model, tok = tiny_model()
    prompts = [tok.encode("a = 1. What is a?"), tok.encode("b = 2.")]
    scfg = SamplingConfig(max_new_tokens=6, temperature=0.0)
    with ParallelSampler(model, 2) as pool:
        before = pool.sample(prompts, scfg, eos_id=tok.eos_id).completion_ids
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        pool.refresh(model)
        after = pool.sample(prompts, scfg, eos_id=tok.eos_id).completion_ids
    expected = sample(LlamaRunner(model), prompts, scfg, eos_id=tok.eos_id).completion_ids
    assert after == expected and after != before


def test_plot_run_writes_the_curves(tmp_path):
    from reasonlab.train.rl_monitor import plot_run

    log = [{"step": i, "accuracy": i / 10, "reward": i / 10, "reward_accuracy": i / 10, "length_mean": 30 + i,
            "length_p90": 40, "reflection_rate": 0.0, "entropy": 0.1, "tokens_per_s": 1e3} for i in range(1, 6)]
    log[-1].update({"heldout_pass@1": 0.5, "heldout_maj@4": 0.6})
    names = sorted(p.name for p in plot_run(log, tmp_path))
    assert names == ["accuracy.png", "entropy_kl.png", "length.png", "rates.png", "reward.png", "speed.png"]


@pytest.mark.slow
def test_grpo_runs_with_partial_rollouts_and_curriculum(tmp_path):
    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    cfg = load_config(GRPOConfig, None, [
        f"--model={tmp_path / 'm'}", f"--runs_dir={tmp_path}", "--backend=local", "--steps=3", "--max_new_tokens=16",
        "--segment_tokens=6", "--train_pool=40", "--eval_problems=2", "--eval_n=2", "--eval_every=3",
        "--prompts_per_step=3", "--group_size=3", "--rewards={accuracy: 1.0, length: 1.0}", "--preflight=false",
        "--final_eval=false", "--prompts.mode=curriculum", "--prompts.dynamic=true", "--loss.beta=0.05"])
    summary = grpo(cfg, progress=False)
    with open(tmp_path / "grpo" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2, 3] and summary["steps"] == 3
    assert rows[0]["groups_scored"] == 0 and rows[0]["buffered_groups"] > 0   # 16 tokens need 3 segments
    assert any(r["groups_scored"] > 0 for r in rows) and "heldout_pass@1" in rows[-1]
    assert (tmp_path / "grpo" / "checkpoint" / "trainer_state.pt").exists()
