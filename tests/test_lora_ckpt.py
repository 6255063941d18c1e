"""Training options: LoRA adapters (only they train; merged weights equal the wrapped model), gradient
checkpointing (same loss and gradients), and an explicit training device."""
import copy
import json

import pytest
import torch

from reasonlab.cli import oom_advice
from reasonlab.config import ConfigError, load_config
from reasonlab.models.checkpoint import load_checkpoint, save_checkpoint
from reasonlab.models.llama import Llama
from reasonlab.models.lora import (
    LoRALinear,
    add_lora,
    has_lora,
    load_lora_state,
    lora_state,
    merged_policy,
    trainable_parameters,
)
from reasonlab.train import grpo, rft
from reasonlab.train.logprobs import completion_logprobs
from reasonlab.train.policy_update import PAD_TO
from reasonlab.train.precision import (
    check_training_options,
    prepare_policy,
    workers_can_compute_gradients,
)
from reasonlab.train.rollout import batch_tensors
from rl_helpers import random_groups, tiny_model

PAIRS = ["1 + 2 = ?", "3</answer>"], ["4 - 1 = ?", "3"], ["2 * 3 = ?", "6</answer>"]


def lora_policy(rank=4, **kw):
    """A tiny model wrapped with LoRA by ``prepare_policy`` (device given explicitly)."""
    model, tok = tiny_model()
    cfg = grpo.GRPOConfig(model="x", lora_rank=rank, device="cpu", **kw)
    return prepare_policy(model, cfg), tok, cfg


def snapshot(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(model, before) -> tuple[list[str], list[str]]:
    """-> (adapter parameters left unchanged, base parameters that changed)."""
    now = dict(model.named_parameters())
    same_adapters = [n for n in before if ".lora_" in n and torch.equal(now[n], before[n])]
    moved_base = [n for n in before if ".lora_" not in n and not torch.equal(now[n], before[n])]
    return same_adapters, moved_base


def test_lora_wraps_our_linears_and_starts_equal_to_the_base():
    model, _ = tiny_model()
    ids = torch.randint(3, 140, (2, 12))
    with torch.no_grad():
        base = model(ids)
    add_lora(model, rank=4, alpha=8)
    assert isinstance(model, Llama) and has_lora(model)
    wrapped = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert wrapped == {"qkv", "o", "gate_up", "down"}                      # lm_head and embeddings untouched
    assert all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    assert len(trainable_parameters(model)) == 2 * 4 * model.cfg.n_layers
    with torch.no_grad():
        assert torch.equal(model(ids), base)                               # B starts at zero
    with pytest.raises(ValueError, match="match no Linear"):
        add_lora(tiny_model()[0], rank=2, targets=["nope"])


def test_one_grpo_step_with_lora_changes_every_adapter_and_no_base_parameter():
    """mu=2: in the first optimiser step only B moves (its gradient is the only non-zero one while
    B = 0), in the second A moves too."""
    policy, tok, cfg = lora_policy(lr=1e-2, micro_batch=4, loss=grpo.LossConfig(mu=2))
    before = snapshot(policy)
    groups, adv = random_groups(p=2, g=4, seed=1)
    opt = grpo.make_optimizer(policy, cfg)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable_parameters(policy))
    policy.train()
    stats = grpo.update(policy, None, opt, batch_tensors(groups, adv, tok.pad_id, PAD_TO), cfg)
    assert torch.isfinite(torch.tensor(stats["loss"]))
    assert changed(policy, before) == ([], [])


def test_one_rft_step_with_lora_changes_every_adapter_and_no_base_parameter():
    model, tok = tiny_model()
    cfg = rft.RFTConfig(model="x", batch_size=len(PAIRS), epochs=2, lora_rank=4, device="cpu", lr=1e-2)
    policy = prepare_policy(model, cfg)
    before = snapshot(policy)
    opt = torch.optim.AdamW(trainable_parameters(policy), lr=cfg.lr)
    pairs = [(tok.encode(p), tok.encode(c)) for p, c in PAIRS]
    loss = rft.sft(policy, opt, pairs, cfg, seed=0)
    assert loss == loss
    assert changed(policy, before) == ([], [])


def trained_lora_policy():
    policy, tok, cfg = lora_policy(lr=1e-2, micro_batch=8, loss=grpo.LossConfig(mu=2))
    groups, adv = random_groups(p=2, g=4, seed=2)
    policy.train()
    grpo.update(policy, None, grpo.make_optimizer(policy, cfg), batch_tensors(groups, adv, tok.pad_id), cfg)
    return policy, tok


def test_merged_model_gives_the_wrapped_models_logits():
    policy, _ = trained_lora_policy()
    merged = merged_policy(policy)
    assert type(merged) is Llama and not has_lora(merged) and has_lora(policy)       # a copy: policy untouched
    assert set(merged.state_dict()) == set(tiny_model()[0].state_dict())
    ids = torch.randint(3, 140, (3, 20))
    policy.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(ids), policy(ids), atol=1e-5, rtol=0)
    assert merged_policy(merged) is merged                                        # nothing to merge


def test_lora_checkpoint_is_a_plain_model_directory_and_adapters_restore(tmp_path):
    policy, tok = trained_lora_policy()
    grpo.save_policy(tmp_path / "ckpt", policy, tok, trainer_state={"lora": lora_state(policy)})
    loaded, _, state = load_checkpoint(tmp_path / "ckpt")
    ids = torch.randint(3, 140, (2, 16))
    policy.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), policy(ids), atol=1e-5, rtol=0)
    again, _, _ = lora_policy()                       # the same base (seed 0), fresh adapters
    load_lora_state(again, state["lora"])
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(ids), policy(ids))
    with pytest.raises(ValueError, match="lora_rank"):
        load_lora_state(lora_policy(rank=2)[0], state["lora"])


def test_workers_do_not_compute_lora_gradients():
    assert workers_can_compute_gradients(tiny_model()[0])
    assert not workers_can_compute_gradients(lora_policy()[0])


def test_transformers_models_take_lora_on_their_projections():
    transformers = pytest.importorskip("transformers")
    from reasonlab.models.random_models import random_config

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(random_config("qwen2-tiny"))
    add_lora(model, rank=2, alpha=4)
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    merged = merged_policy(model)
    ids = torch.randint(3, 100, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model(ids).logits, atol=1e-5, rtol=0)


# ---- gradient checkpointing ------------------------------------------------------------------

def grads_of(model, loss_fn) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert abs(loss_a - loss_b) <= 1e-6 and set(grads_a) == set(grads_b)
    for n in grads_a:
        torch.testing.assert_close(grads_a[n], grads_b[n], atol=1e-6, rtol=0, msg=n)


def test_grad_checkpointing_gives_the_same_loss_and_gradients():
    model, _ = tiny_model()
    model.train()
    ids = torch.randint(3, 140, (3, 24))
    targets = torch.randint(3, 140, (3, 24))
    plain = grads_of(model, lambda m: m.loss(ids, targets))
    model.grad_checkpointing = True
    assert_same(grads_of(model, lambda m: m.loss(ids, targets)), plain)
    model.grad_checkpointing = False
    assert_same(grads_of(model, lambda m: m.forward(ids, grad_checkpointing=True).square().mean()),
                grads_of(model, lambda m: m.forward(ids).square().mean()))
    assert model.checkpointing(True)
    model.eval()
    assert not model.checkpointing(True)                # evaluation never recomputes
    model.train()
    with torch.no_grad():
        assert not model.checkpointing(True)


def test_grad_checkpointing_on_grouped_logprobs_and_lora():
    policy, tok, _ = lora_policy()
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    groups, adv = random_groups(p=2, g=3, seed=3)
    batch = batch_tensors(groups, adv, tok.pad_id)
    mb = {k: batch[k] for k in ("prompt_ids", "prompt_len", "ids", "group")}
    policy.train()

    def loss(m):
        logp, ent = completion_logprobs(m, **mb, with_entropy=True)
        return ((logp + 0.1 * ent) * batch["mask"]).sum()

    plain = grads_of(policy, loss)
    assert plain[1] and all(".lora_" in n for n in plain[1])
    policy.grad_checkpointing = True
    assert_same(grads_of(policy, loss), plain)


def test_grpo_step_with_grad_checkpointing_matches_without():
    stats = []
    for flag in (False, True):
        model, tok = tiny_model()
        cfg = grpo.GRPOConfig(model="x", lr=1e-2, micro_batch=4, autocast="none", grad_checkpointing=flag)
        model = prepare_policy(model, cfg)
        groups, adv = random_groups(p=2, g=4, seed=4)
        model.train()
        stats.append((grpo.update(model, None, grpo.make_optimizer(model, cfg),
                                  batch_tensors(groups, adv, tok.pad_id, PAD_TO), cfg), snapshot(model)))
    (a, pa), (b, pb) = stats
    assert abs(a["loss"] - b["loss"]) <= 1e-6 and abs(a["grad_norm"] - b["grad_norm"]) <= 1e-5
    for n in pa:
        torch.testing.assert_close(pa[n], pb[n], atol=1e-6, rtol=0)


# ---- device ----------------------------------------------------------------------------------

def test_training_step_with_device_cpu_given_explicitly():
    model, tok = tiny_model()
    cfg = grpo.GRPOConfig(model="x", lr=1e-2, micro_batch=4, device="cpu")     # bf16 autocast (default)
    reference = copy.deepcopy(model)
    model = prepare_policy(model, cfg)
    groups, adv = random_groups(p=2, g=4, seed=5)
    batch = batch_tensors(groups, adv, tok.pad_id, PAD_TO)
    before = snapshot(model)
    model.train()
    grpo.update(model, None, grpo.make_optimizer(model, cfg), batch, cfg)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert not [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    reference.train()          # the same step without prepare_policy: bit-identical (CPU unchanged)
    grpo.update(reference, None, grpo.make_optimizer(reference, cfg), batch, cfg)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))


def test_device_and_lora_settings_are_checked():
    check_training_options(grpo.GRPOConfig(device="cpu"))
    check_training_options(rft.RFTConfig(device="auto", lora_rank=8))
    for bad, key in [({"device": "gpu"}, "device"), ({"device": "tpu"}, "device"), ({"lora_rank": -1}, "lora_rank"),
                     ({"lora_rank": 4, "lora_alpha": 0.0}, "lora_alpha")]:
        with pytest.raises(ConfigError, match=key):
            check_training_options(grpo.GRPOConfig(**bad))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            check_training_options(rft.RFTConfig(device="cuda"))


def test_out_of_memory_advice_names_each_stages_settings():
    assert "micro_batch" in oom_advice("grpo") and "max_new_tokens" in oom_advice("grpo")
    assert "batch_size" in oom_advice("rft") and "max_new_tokens" in oom_advice("rft")
    assert "batch_size" in oom_advice("pretrain") and "grad_checkpointing" in oom_advice("pretrain")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_grpo_and_rft_steps_on_cuda_keep_fp32_weights():
    for rank in (0, 4):
        model, tok = tiny_model()
        cfg = grpo.GRPOConfig(model="x", lr=1e-2, micro_batch=4, device="cuda", lora_rank=rank,
                              loss=grpo.LossConfig(mu=2))
        model = prepare_policy(model, cfg)
        before = snapshot(model)
        groups, adv = random_groups(p=2, g=4, seed=6)
        model.train()
        stats = grpo.update(model, None, grpo.make_optimizer(model, cfg),
                            batch_tensors(groups, adv, tok.pad_id, PAD_TO), cfg)
        assert torch.isfinite(torch.tensor(stats["loss"]))
        assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())
        assert not [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
        rcfg = rft.RFTConfig(batch_size=2, device="cuda")
        loss = rft.sft(model, torch.optim.AdamW(trainable_parameters(model), lr=1e-3),
                       [(tok.encode(p), tok.encode(c)) for p, c in PAIRS], rcfg, seed=0)
        assert loss == loss


# ---- the stages end to end -------------------------------------------------------------------

@pytest.mark.slow
def test_grpo_and_rft_stages_with_lora_write_plain_models_and_resume(tmp_path):
    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    common = [f"--model={tmp_path / 'm'}", f"--runs_dir={tmp_path}", "--backend=local", "--max_new_tokens=8",
              "--train_pool=20", "--eval_problems=2", "--eval_n=2", "--final_eval=false", "--lora_rank=4",
              "--grad_checkpointing=true", "--device=cpu"]
    args = common + ["--steps=1", "--prompts_per_step=2", "--group_size=2", "--preflight=false", "--eval_every=0",
                     "--rewards={accuracy: 1.0, length: 1.0}", "--lr=1e-2", "--loss.mu=2"]
    grpo.grpo(load_config(grpo.GRPOConfig, None, args), progress=False)
    plain, _, state = load_checkpoint(tmp_path / "grpo" / "checkpoint")
    assert type(plain) is Llama and state["lora"] and all(".lora_" in n for n in state["lora"])
    assert not all(torch.equal(p, q) for p, q in zip(plain.parameters(), model.parameters()))
    grpo.grpo(load_config(grpo.GRPOConfig, None, [a.replace("--steps=1", "--steps=2") for a in args]
                          + ["--resume=true"]), progress=False)
    with open(tmp_path / "grpo" / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2]
    rft.rft(load_config(rft.RFTConfig, None, common + ["--rounds=1", "--prompts_per_round=2",
                                                       "--samples_per_prompt=2"]), progress=False)
    loaded, _, _ = load_checkpoint(tmp_path / "rft" / "model")
    assert type(loaded) is Llama
