"""Export: a trained tiny checkpoint becomes a clean Hugging Face directory that transformers
loads with the same logits, the same token ids and the same greedy samples."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from reasonlab.cli import main
from reasonlab.engine.hf import HFRunner
from reasonlab.engine.sampler import SamplingConfig, sample
from reasonlab.engine.tiny import LlamaRunner
from reasonlab.models.checkpoint import save_checkpoint
from reasonlab.models.hf import HFTokenizer, load_policy
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.train.pretrain import PretrainConfig, make_optimizer, train_step


def trained_checkpoint(path):
    """A tiny model after one optimiser step, saved with its training state like pretrain does."""
    tok = CharTokenizer()
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64))
    opt = make_optimizer(model, PretrainConfig())
    ids = torch.tensor([tok.encode("x = 3 + 4. What is x? <answer>7</answer>")])
    train_step(model, opt, ids[:, :-1], ids[:, 1:], 1e-2, 1.0, "none")
    save_checkpoint(path, model, tok, trainer_state={"step": 1, "optimizer": opt.state_dict()})
    return model, tok


def test_export_cli_writes_a_directory_transformers_loads_with_equal_logits_and_samples(tmp_path):
    model, tok = trained_checkpoint(tmp_path / "ck")
    assert main(["export", f"--model={tmp_path / 'ck'}", f"--out={tmp_path / 'out'}"]) == 0
    out = tmp_path / "out"
    assert not (out / "trainer_state.pt").exists() and (out / "model.safetensors").exists()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    text = "a = 5. b = a * 2. What is b? <answer>10</answer>"
    assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text)
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, model(ids), atol=1e-4)
    prompts = [tok.encode("What is 2 + 3?"), tok.encode("x = 1. y = x + 4. What is y?")]
    greedy = SamplingConfig(n=1, max_new_tokens=12, temperature=0.0)
    ours = sample(LlamaRunner(model), prompts, greedy, eos_id=tok.eos_id, pad_id=tok.pad_id)
    theirs = sample(HFRunner(hf), prompts, greedy, eos_id=tok.eos_id, pad_id=tok.pad_id)
    assert ours.completion_ids == theirs.completion_ids
    for a, b in zip(ours.logprobs, theirs.logprobs):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-4)


def test_export_hf_model_in_bfloat16_loads_through_the_adapter(tmp_path):
    model, _ = trained_checkpoint(tmp_path / "ck")
    hf_dir = tmp_path / "hf"
    main(["export", f"--model={tmp_path / 'ck'}", f"--out={hf_dir}"])
    config = json.loads((hf_dir / "config.json").read_text())
    config.pop("reasonlab")                      # now just a Llama directory to the loader
    (hf_dir / "config.json").write_text(json.dumps(config))
    assert main(["export", f"--model={hf_dir}", f"--out={tmp_path / 'bf16'}", "--dtype=bfloat16"]) == 0
    loaded, tok, kind = load_policy(tmp_path / "bf16", device="cpu", dtype="auto", impl="transformers")
    assert kind == "hf" and isinstance(tok, HFTokenizer)
    assert next(loaded.parameters()).dtype == torch.bfloat16
    ids = torch.tensor([tok.encode("What is 7 - 2?")])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits.float(), model(ids), atol=0.1)
