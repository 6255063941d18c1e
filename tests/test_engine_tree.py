"""Engine protocol extension for tree search: ``active`` holes, forking ``select``, ``concat``.

Every check compares the cached logits of a row with a no-cache full forward pass over the
row's own token path (prompt + the tokens it actually consumed)."""
import pytest
import torch

from reasonlab.engine.sampler import SamplingConfig, left_pad, sample
from reasonlab.engine.tiny import LlamaRunner
from reasonlab.models.llama import Llama, LlamaConfig


def tiny(seed=0, n_kv_heads=2):
    torch.manual_seed(seed)
    return Llama(LlamaConfig(vocab_size=40, d_model=64, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads,
                             d_ff=96, max_seq_len=128))


PROMPTS = [list(range(3, 15)) + [20, 21], list(range(3, 15)) + [22, 23, 24, 25], list(range(3, 15)) + [26]]


@torch.no_grad()
def reference(model, paths):
    return torch.stack([model(torch.tensor([p]))[0, -1] for p in paths])


@torch.no_grad()
@pytest.mark.parametrize("merge", [0, 64])
def test_active_holes_and_forks_match_full_forward(merge):
    model = tiny()
    runner = LlamaRunner(model, merge_prefix_below=merge)
    ids, valid = left_pad(PROMPTS, 0)
    logits, state = runner.prefill(ids, valid, max_new=12, copies=2)
    paths = [list(p) for p in PROMPTS for _ in range(2)]
    gen = torch.Generator().manual_seed(0)
    for step in range(8):
        assert torch.allclose(logits, reference(model, paths), atol=1e-4)
        tok = torch.randint(3, 40, (len(paths),), generator=gen)
        active = torch.rand(len(paths), generator=gen) < 0.6
        before = runner.tokens_encoded
        new_logits = runner.decode(state, tok, active)
        assert runner.tokens_encoded - before == int(active.sum())
        logits = torch.where(active[:, None], new_logits, logits)      # inactive rows keep theirs
        paths = [p + [int(t)] if a else p for p, t, a in zip(paths, tok, active)]
        if step in (2, 5):                                              # fork and drop rows
            rows = torch.tensor([0, 0, 3, 5, 5, 5]) if step == 2 else torch.tensor([1, 4, 4, 2])
            state, logits = runner.select(state, rows), logits[rows]
            paths = [list(paths[i]) for i in rows]
    assert torch.allclose(logits, reference(model, paths), atol=1e-4)


@torch.no_grad()
def test_concat_states_of_different_shapes():
    model = tiny(n_kv_heads=1)
    runner = LlamaRunner(model, merge_prefix_below=0)
    a_prompts, b_prompts = PROMPTS[:2], [[7, 8, 9]]
    _, sa = runner.prefill(*left_pad(a_prompts, 0), max_new=6, copies=2)    # shared-prefix segment
    _, sb = runner.prefill(*left_pad(b_prompts, 0), max_new=9, copies=3)    # no shared segment
    pa = [list(p) for p in a_prompts for _ in range(2)]
    pb = [list(p) for p in b_prompts for _ in range(3)]
    for t in (30, 31, 32):                                    # a is 3 tokens ahead of b
        runner.decode(sa, torch.full((4,), t))
        pa = [p + [t] for p in pa]
    runner.decode(sb, torch.full((3,), 33), torch.tensor([True, False, True]))
    pb = [p + [33] if i != 1 else p for i, p in enumerate(pb)]
    state = runner.concat([sa, sb])
    paths = pa + pb
    for t in (34, 35):
        logits = runner.decode(state, torch.full((len(paths),), t))
        paths = [p + [t] for p in paths]
        assert torch.allclose(logits, reference(model, paths), atol=1e-4)


def test_plain_sampling_keeps_fast_path():
    runner = LlamaRunner(tiny())
    ids, valid = left_pad(PROMPTS, 0)
    _, state = runner.prefill(ids, valid, max_new=4, copies=2)
    runner.decode(state, torch.full((6,), 5))
    runner.decode(state, torch.full((6,), 5), torch.ones(6, dtype=torch.bool))
    assert state.own_valid is None
    batch = sample(runner, PROMPTS, SamplingConfig(n=2, max_new_tokens=4), eos_id=-1)
    assert len(batch) == 6
