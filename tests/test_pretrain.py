"""Pretraining pieces: corpus packing, LR schedule, one step updates every parameter."""
import random

import pytest
import torch

from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.tasks import get_task
from reasonlab.train.corpus import build_mixture, packed_batch
from reasonlab.train.pretrain import PretrainConfig, lr_at, make_optimizer, train_step

MIX = {"arith": {"weight": 3, "generate": {"steps": [1, 3]}, "trace": {"error_rate": 0.2}},
       "countdown": {"weight": 1, "generate": {"n_numbers": 3}}}


def batch(index=0, **kw):
    tok = CharTokenizer()
    mixture = build_mixture(MIX, "r1", get_task)
    return tok, packed_batch(mixture, tok.encode, tok.eos_id, 4, 512, seed=1, index=index, **kw)


def test_batches_are_a_pure_function_of_seed_and_index():
    _, (x1, y1) = batch(3)
    _, (x2, y2) = batch(3)
    _, (x3, _) = batch(4)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)


def test_rows_start_at_documents_and_targets_shift_inputs():
    tok, (x, y) = batch()
    for row in range(x.shape[0]):
        assert tok.decode(x[row, :20].tolist()).startswith("A conversation")
        n = int((y[row] != -100).sum())                       # real tokens, then padding
        assert torch.equal(x[row, 1:n], y[row, : n - 1])
        assert y[row, n - 1] == tok.eos_id and (y[row, n:] == -100).all()


def test_loss_on_prompt_false_masks_prompts_only():
    tok, (x, y_all) = batch(loss_on_prompt=True)
    _, (_, y_trace) = batch(loss_on_prompt=False)
    text = tok.decode(x[0].tolist())
    prompt_chars = text.index("Assistant: <think>") + len("Assistant: <think>")
    prompt_len = len(tok.encode(text[:prompt_chars]))
    assert (y_trace[0, : prompt_len - 1] == -100).all()
    assert torch.equal(y_trace[0, prompt_len:prompt_len + 20], y_all[0, prompt_len:prompt_len + 20])


def test_mixture_errors_name_the_key():
    with pytest.raises(ValueError, match="mixture.arith: unknown keys"):
        build_mixture({"arith": {"wieght": 1}}, "r1", get_task)
    with pytest.raises(ValueError, match="unknown task"):
        build_mixture({"nope": {}}, "r1", get_task)


def test_lr_schedule_warmup_then_cosine_to_floor():
    cfg = PretrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg, 100) == pytest.approx(0.1)
    assert lr_at(9, cfg, 100) == pytest.approx(1.0)
    assert lr_at(100, cfg, 100) == pytest.approx(0.1)
    assert all(lr_at(s, cfg, 100) >= lr_at(s + 1, cfg, 100) for s in range(10, 100))


@pytest.mark.parametrize("autocast", ["none", "bfloat16"])
def test_one_step_changes_every_parameter_and_lowers_loss(autocast):
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=99, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=64))
    cfg = PretrainConfig(lr=1e-2, weight_decay=0.0)
    opt = make_optimizer(model, cfg)
    x = torch.randint(3, 99, (4, 32))
    y = torch.roll(x, -1, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    first = train_step(model, opt, x, y, cfg.lr, 1.0, autocast)
    for n, p in model.named_parameters():
        assert not torch.equal(before[n], p), n
    for _ in range(20):
        last = train_step(model, opt, x, y, cfg.lr, 1.0, autocast)
    assert last < first


def test_trace_rng_independent_of_python_global_state():
    random.seed(123)
    _, (a, _) = batch(0)
    random.seed(999)
    _, (b, _) = batch(0)
    assert torch.equal(a, b)
