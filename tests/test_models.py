"""Tiny model, tokenizer and checkpoints: Hugging Face compatibility and atomic saving."""
import json

import pytest
import torch

from reasonlab.models.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer

CFG = dict(vocab_size=99, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=96, max_seq_len=128)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return Llama(LlamaConfig(**{**CFG, **kw}))


def test_tokenizer_roundtrip_and_unknown():
    tok = CharTokenizer()
    text = "a = 7, b = 12.\n<answer>-19</answer>"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("é") == [tok.unk_id]
    assert tok.vocab_size == len(tok.itos) and tok.encode(" = ") == [tok.stoi[" = "]]


def test_checkpoint_roundtrip(tmp_path):
    model, tok = tiny(), CharTokenizer()
    save_checkpoint(tmp_path / "ck", model, tok, trainer_state={"step": 3})
    loaded, tok2, state = load_checkpoint(tmp_path / "ck")
    ids = torch.randint(0, 99, (2, 20))
    assert torch.equal(model(ids), loaded(ids))
    assert state["step"] == 3 and tok2.itos == tok.itos
    assert not any(p.name.endswith((".tmp", ".old")) for p in tmp_path.iterdir())


def test_checkpoint_overwrite_and_crash_recovery(tmp_path):
    tok = CharTokenizer()
    save_checkpoint(tmp_path / "ck", tiny(0), tok)
    save_checkpoint(tmp_path / "ck", tiny(1), tok)          # overwrite in place
    ids = torch.randint(0, 99, (1, 10))
    assert torch.equal(load_checkpoint(tmp_path / "ck")[0](ids), tiny(1)(ids))
    (tmp_path / "ck").rename(tmp_path / "ck.old")          # crash between the two renames
    assert resolve_checkpoint(tmp_path / "ck") == tmp_path / "ck.old"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(tmp_path / "missing")


@pytest.mark.parametrize("kw", [{}, {"n_kv_heads": 4}, {"tie_embeddings": True}])
def test_transformers_loads_same_logits(tmp_path, kw):
    transformers = pytest.importorskip("transformers")
    model, tok = tiny(**kw), CharTokenizer()
    save_checkpoint(tmp_path / "ck", model, tok)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "ck")).eval()
    ids = torch.randint(0, 99, (3, 40))
    with torch.no_grad():
        diff = (model(ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-4


def test_transformers_tokenizer_same_ids(tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = CharTokenizer()
    tok.save(tmp_path)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    text = "User: a = 3, b = 4.  c = a * b.\nAssistant: <think>\n~{}|"
    assert hf_tok(text, add_special_tokens=True)["input_ids"] == tok.encode(text)
    assert hf_tok.decode(tok.encode(text)) == text
    assert hf_tok.eos_token_id == tok.eos_id and hf_tok.pad_token_id == tok.pad_id


def test_config_json_is_llama(tmp_path):
    save_checkpoint(tmp_path / "ck", tiny(), CharTokenizer())
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["model_type"] == "llama" and meta["num_key_value_heads"] == 2


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        Llama(LlamaConfig(d_model=64, n_heads=3))


def test_config_fields_round_trip_and_old_checkpoints_load(tmp_path):
    """New family fields default off; ``asdict`` round-trips (parallel workers rebuild from it);
    a checkpoint written before those fields existed still loads."""
    from dataclasses import asdict

    cfg = LlamaConfig(**CFG, qk_norm=True, attn_head_dim=24, family="qwen3",
                      rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert LlamaConfig(**asdict(cfg)) == cfg and cfg.head_dim == 24 and LlamaConfig().head_dim == 32
    model, tok = tiny(), CharTokenizer()
    save_checkpoint(tmp_path / "ck", model, tok)
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    for key in ("attn_head_dim", "qkv_bias", "qk_norm", "rope_scaling", "family"):
        meta["reasonlab"]["llama"].pop(key)
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    loaded, _, _ = load_checkpoint(tmp_path / "ck")
    ids = torch.randint(0, 99, (2, 20))
    assert loaded.cfg == model.cfg and torch.equal(loaded(ids), model(ids))


@pytest.mark.parametrize("kw", [{"qkv_bias": True, "family": "qwen2"},
                                {"qk_norm": True, "attn_head_dim": 8, "family": "qwen3", "tie_embeddings": True}])
def test_tiny_configs_of_other_families_load_in_transformers(tmp_path, kw):
    transformers = pytest.importorskip("transformers")
    model = tiny(**kw)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("bias", "q_norm", "k_norm")):
                p.normal_(1.0, 0.3)
    save_checkpoint(tmp_path / "ck", model, CharTokenizer())
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "ck")).eval()
    assert hf.config.model_type == kw["family"]
    ids = torch.randint(0, 99, (2, 30))
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max() <= 1e-4


def test_family_must_match_its_features(tmp_path):
    from reasonlab.config import ConfigError

    with pytest.raises(ConfigError, match="^family: "):
        save_checkpoint(tmp_path / "ck", tiny(qkv_bias=True), CharTokenizer())      # llama has no qkv bias
    assert not (tmp_path / "ck").exists()
