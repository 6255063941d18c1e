"""The policy update's pieces: CPU attention, shape rounding, sharding by groups, and gradients
computed on the sampler's worker processes against the same gradient computed here."""
import copy

import pytest
import torch
import torch.nn.functional as F

import rl_helpers as helpers
from reasonlab.train import rl
from reasonlab.train.logprobs import attend
from reasonlab.train.policy_update import (
    ParallelGradients,
    UpdateSpec,
    accumulate,
    micro_batches,
    shard_rows,
    sub_batch,
    update,
)
from reasonlab.train.rollout import Group, Row, batch_tensors


def tiny_model(seed=0):
    return helpers.tiny_model(seed, n_heads=4, n_kv_heads=2)          # grouped KV heads


def random_groups(p=5, g=4, seed=0):
    return helpers.random_groups(p, g, seed, prompt_len=(3, 12), length=(1, 30))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attend_matches_sdpa_forward_and_backward(dtype):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 4, 7, 8, generator=gen, dtype=dtype).requires_grad_() for _ in range(3))
    mask = torch.rand(3, 1, 7, 7, generator=gen) > 0.4
    mask |= torch.eye(7, dtype=torch.bool)                     # every query sees a key
    ours = attend(q, k, v, mask)
    grads = torch.autograd.grad(ours.float().square().sum(), (q, k, v))
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    assert torch.allclose(ours.float(), ref, atol=tol)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a.float(), b.float(), atol=tol * 4, rtol=tol)


def test_attend_repeats_kv_heads_for_grouped_queries():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 5, 8, generator=gen, dtype=torch.bfloat16)
    k, v = (torch.randn(2, 2, 5, 8, generator=gen, dtype=torch.bfloat16) for _ in range(2))
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True, enable_gqa=True)
    assert torch.allclose(attend(q, k, v, mask).float(), ref, atol=3e-2)


def test_shard_rows_keeps_whole_groups_and_covers_every_row():
    groups, adv = random_groups(p=7)
    batch = batch_tensors(groups, adv, pad_id=0)
    for parts in (1, 2, 3, 7, 9):
        shards = shard_rows(batch, parts)
        assert len(shards) == min(parts, 7)
        assert torch.cat(shards).tolist() == list(range(28))          # consecutive, all rows, once
        for rows in shards:
            in_shard = set(batch["group"][rows].tolist())
            assert all(int((batch["group"] == g).sum()) == int((batch["group"][rows] == g).sum()) for g in in_shard)


def test_shard_rows_minimises_the_largest_padded_shard():
    # two groups of 2 rows: lengths 10 and 2; then two groups of 2 rows with length 3
    groups = [Group(i, [5], [Row(ids=[7] * n, logprobs=[0.0] * n, finish="eos") for n in ns])
              for i, ns in enumerate([(10, 9), (8, 1), (3, 3), (2, 2)])]
    batch = batch_tensors(groups, torch.zeros(4, 2), pad_id=0)
    shards = shard_rows(batch, 2)
    assert [len(s) for s in shards] == [4, 4]      # {10, 8} | {3, 2}: costs 4*10+2 and 4*3+2 (best max)


@pytest.mark.parametrize("aggregation", ["token", "sequence", "constant"])
def test_rounded_micro_batches_and_shards_give_the_same_gradient(aggregation):
    """Widths rounded up to multiples of 16, split into shards (sub_batch) and micro-batches:
    the summed gradient equals one exact-width pass over the whole batch."""
    model, tok = tiny_model()
    groups, adv = random_groups()
    spec = UpdateSpec(autocast="none", micro_batch=3)
    grads = []
    for pad_to, parts in ((1, 1), (16, 3)):
        batch = batch_tensors(groups, adv, tok.pad_id, pad_to=pad_to)
        mask = batch["mask"]
        weights = rl.AGGREGATIONS[aggregation](mask, int(mask.sum(1).max()))
        old, n_tok = batch["behavior"].clone(), float(mask.sum())
        model.zero_grad(set_to_none=True)
        total = None
        for rows in shard_rows(batch, parts):
            accumulate(model, None, sub_batch(batch, rows), weights[rows], old[rows].clone(), spec, True, n_tok)
            now = [p.grad.clone() for p in model.parameters()]
            total = now if total is None else [a + b for a, b in zip(total, now)]
            model.zero_grad(set_to_none=True)
        grads.append(total)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_micro_batches_round_completion_widths_within_the_batch():
    groups, adv = random_groups(p=3)
    batch = batch_tensors(groups, adv, pad_id=0, pad_to=16)
    assert batch["ids"].shape[1] % 16 == 0
    assert batch["prompt_ids"].shape[1] == max(len(g.prompt_ids) for g in groups)     # prompts: exact
    for _, mb, t in micro_batches(batch, 4, pad_to=16):
        assert t % 16 == 0 and mb["ids"].shape[1] == t
        assert mb["prompt_ids"].shape[1] == int(mb["prompt_len"].max())


@pytest.mark.slow
@pytest.mark.parametrize("mu", [1, 2])
def test_worker_gradients_equal_local_gradients(mu):
    """The ``parallel`` backend's update (each worker the gradient of its groups) takes the same
    optimiser steps as the update in this process."""
    from reasonlab.engine.parallel import ParallelSampler

    model, tok = tiny_model()
    other = copy.deepcopy(model)
    groups, adv = random_groups(p=6)
    batch = batch_tensors(groups, adv, tok.pad_id, pad_to=16)
    spec = UpdateSpec(autocast="none", micro_batch=5)
    stats = []
    with ParallelSampler(other, 2, grad_buffers=True) as pool:
        for m, gradients in ((model, None), (other, ParallelGradients(pool))):
            opt = torch.optim.SGD(m.parameters(), lr=0.5)
            kw = {} if gradients is None else {"gradients": gradients}
            stats.append(update(m, None, opt, batch, spec, mu=mu, **kw))
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    for k in ("loss", "clip_frac", "entropy", "grad_norm"):
        assert stats[0][k] == pytest.approx(stats[1][k], rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_parallel_sampler_call_runs_on_every_worker_and_reports_errors():
    from reasonlab.engine.parallel import ParallelSampler

    model, _ = tiny_model()
    with ParallelSampler(model, 2, grad_buffers=True) as pool:
        assert pool.workers == 2 and set(pool.grads[0]) == {k for k, _ in model.named_parameters()}
        with pytest.raises(ValueError, match="3 jobs for 2 workers"):
            pool.call(_worker_ok, [(), (), ()])
        with pytest.raises(ValueError, match="no reference model"):
            ParallelGradients(pool)(model, None, {}, None, None, UpdateSpec(beta=0.1), True, 1.0)


def _worker_ok(ctx):
    return True
