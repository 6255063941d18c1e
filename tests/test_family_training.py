"""Training on Hugging Face checkpoints of every family we run in our code (Llama with llama3 RoPE
scaling and tied embeddings, Qwen2 with q/k/v biases, Qwen3 with q/k norm): one GRPO update and one
RFT step change every trainable parameter; weights train in fp32 whatever the checkpoint's dtype."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from rl_helpers import random_groups

from reasonlab.models.llama import Llama
from reasonlab.models.random_models import random_config, save_random_model
from reasonlab.train import grpo, rft
from reasonlab.train.policy_update import PAD_TO
from reasonlab.train.rollout import batch_tensors

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
FAMILIES = {
    "llama": ("llama-tiny", {"tie_word_embeddings": True, "rope_scaling": LLAMA3_ROPE}),
    "qwen2": ("qwen2-tiny", {}),
    "qwen3": ("qwen3-tiny", {}),
}


def family_config(family: str):
    preset, overrides = FAMILIES[family]
    return random_config(preset, **overrides)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_families")
    for family in FAMILIES:
        save_random_model(root / family, family_config(family))
    return root


@pytest.mark.parametrize("family", list(FAMILIES))
def test_one_grpo_update_changes_every_parameter(dirs, family):
    model, tok = grpo.load_policy(str(dirs / family))
    assert isinstance(model, Llama) and model.cfg.family == family
    assert all(p.dtype == torch.float32 for p in model.parameters())
    cfg = grpo.GRPOConfig(lr=1e-2, micro_batch=4, autocast="none")
    groups, adv = random_groups(p=2, g=4, seed=1)
    batch = batch_tensors(groups, adv, tok.pad_id, PAD_TO)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = grpo.make_optimizer(model, cfg)
    model.train()
    stats = grpo.update(model, None, opt, batch, cfg)
    assert torch.isfinite(torch.tensor(stats["loss"]))
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged


@pytest.mark.parametrize("family", list(FAMILIES))
def test_one_rft_step_changes_every_parameter(dirs, family):
    model, tok = grpo.load_policy(str(dirs / family))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pairs = [(tok.encode("1 + 2 = ?"), tok.encode("3</answer>")), (tok.encode("4 - 1 = ?"), tok.encode("3"))]
    loss = rft.sft(model, opt, pairs, rft.RFTConfig(batch_size=2, epochs=1), seed=0)
    assert loss == loss
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged


def test_bf16_checkpoints_train_in_fp32_so_small_updates_are_kept(tmp_path):
    """A checkpoint stored in bf16, and an architecture that runs through transformers (Mistral),
    both load for training as fp32 weights: an update below bf16's resolution (2^-8 relative) is
    kept, where AdamW on bf16 weights would round it away."""
    config = transformers.MistralConfig(**{k: v for k, v in random_config("llama-tiny").to_dict().items()
                                           if k in ("vocab_size", "hidden_size", "intermediate_size",
                                                    "num_hidden_layers", "num_attention_heads",
                                                    "num_key_value_heads", "eos_token_id", "pad_token_id")})
    model = save_random_model(tmp_path / "mistral", config)
    model.to(torch.bfloat16).save_pretrained(str(tmp_path / "mistral"))
    save_random_model(tmp_path / "qwen3", family_config("qwen3")).to(torch.bfloat16).save_pretrained(
        str(tmp_path / "qwen3"))
    for name in ("mistral", "qwen3"):
        policy, _ = grpo.load_policy(str(tmp_path / name))
        weight = next(p for p in policy.parameters() if p.dim() == 2)
        assert weight.dtype == torch.float32, name
        step = weight.detach().abs() * 1e-3                          # ~1/4 of bf16's resolution
        with torch.no_grad():
            before = weight.detach().clone()
            weight.add_(step)
        assert not torch.equal(weight, before), name
        as_bf16 = before.to(torch.bfloat16)
        assert torch.equal((as_bf16 + step.to(torch.bfloat16)), as_bf16)      # bf16 would lose it


def test_every_random_preset_is_a_valid_config():
    from reasonlab.models.families import config_from_hf
    from reasonlab.models.random_models import PRESETS

    for preset in PRESETS:
        ours = config_from_hf(random_config(preset).to_dict())
        assert ours.vocab_size == PRESETS[preset][1]["vocab_size"], preset
