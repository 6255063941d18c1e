"""The PolicyBackend: both implementations draw the same samples, refresh to new weights, save a
directory that loads back, expose a runner for search, and refuse what they cannot run."""
import pytest
import torch

from reasonlab.backends import make_backend
from reasonlab.backends.policy import LocalBackend, WorkerBackend
from reasonlab.config import ConfigError
from reasonlab.engine.sampler import SamplingConfig
from reasonlab.models.hf import load_policy
from tests.rl_helpers import tiny_model


def prompts(tok):
    return [tok.encode(t) for t in ("3 + 4 =", "12 * 2 - 5 =", "7 =", "100 - 1 =")]


def test_worker_and_local_backends_draw_the_same_samples():
    model, tok = tiny_model()
    cfg = SamplingConfig(n=3, max_new_tokens=10, temperature=1.0, seed=5)
    local = LocalBackend(model, tok).sample(prompts(tok), cfg)
    with make_backend(model, tok, "parallel", workers=2) as workers:
        assert isinstance(workers, WorkerBackend) and workers.workers == 2
        assert workers.sample(prompts(tok), cfg).completion_ids == local.completion_ids
        keyed = workers.sample(prompts(tok)[2:], cfg, keys=[2, 3])
        assert keyed.completion_ids == local.completion_ids[6:]


def test_refresh_gives_the_sampler_new_weights():
    greedy = SamplingConfig(n=1, max_new_tokens=8, temperature=0.0)
    for name in ("local", "parallel"):
        m, tok = tiny_model()
        with make_backend(m, tok, name, workers=1) as backend:
            before = backend.sample(prompts(tok), greedy).completion_ids
            with torch.no_grad():
                m.lm_head.weight.mul_(-1.0)                  # a different policy
            backend.refresh(m)
            after = backend.sample(prompts(tok), greedy).completion_ids
            assert after != before
            assert after == LocalBackend(m, tok).sample(prompts(tok), greedy).completion_ids


def test_save_loads_back_with_the_same_logits(tmp_path):
    model, tok = tiny_model()
    backend = LocalBackend(model, tok)
    backend.save(tmp_path / "m")
    again, _, _ = load_policy(tmp_path / "m", device="cpu")
    ids = torch.tensor([prompts(tok)[1]])
    assert torch.allclose(model(ids), again(ids), atol=1e-6)


def test_runner_serves_tree_search():
    model, tok = tiny_model()
    runner = LocalBackend(model, tok).runner()
    from reasonlab.engine.sampler import left_pad

    ids, valid = left_pad(prompts(tok), tok.pad_id)
    logits, state = runner.prefill(ids, valid, 4, copies=2)
    forked = runner.select(state, torch.tensor([0, 0, 3]))
    out = runner.decode(forked, logits[[0, 0, 3]].argmax(-1))
    assert out.shape == (3, model.cfg.vocab_size)
    assert torch.allclose(out[0], out[1])


def test_make_backend_refuses_what_it_cannot_run():
    model, tok = tiny_model()
    with pytest.raises(ConfigError, match="backend: unknown value 'vllm'"):
        make_backend(model, tok, "vllm")

    class Foreign(torch.nn.Module):                       # stands for a transformers model
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="use --backend=local"):
        make_backend(Foreign(), tok, "parallel")
