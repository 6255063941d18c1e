"""vLLM backend: the parts that run without vllm here (clear error, weight naming for the
colocated sync, reason mapping); generation and weight sync themselves need vllm and a GPU."""
import doctest
import importlib.util

import pytest
import torch

import reasonlab.engine.vllm as rl_vllm
from reasonlab.engine.sampler import SamplingConfig
from reasonlab.models.checkpoint import to_hf_state_dict
from reasonlab.models.llama import Llama, LlamaConfig

HAS_VLLM = importlib.util.find_spec("vllm") is not None
HAS_GPU = torch.cuda.is_available()


def test_doctests():
    assert doctest.testmod(rl_vllm).failed == 0


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_gives_an_install_hint():
    with pytest.raises(ImportError, match=r"reasonlab\[vllm\]"):
        rl_vllm.make_llm("/nowhere")
    with pytest.raises(ImportError, match=r"reasonlab\[vllm\]"):
        rl_vllm.sampling_params(SamplingConfig(), eos_id=1)


def test_tiny_model_weights_carry_hugging_face_names():
    model = Llama(LlamaConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32))
    names = dict(rl_vllm.hf_named_weights(model))
    want = to_hf_state_dict(model)
    assert names.keys() == want.keys() and all(torch.equal(names[k], want[k]) for k in want)


def test_lora_weights_are_merged_and_named_like_the_base_model():
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1)
    base = transformers.AutoModelForCausalLM.from_config(config)
    plain_names = set(base.state_dict())
    lora = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                     init_lora_weights=False))
    before = {n: p.detach().clone() for n, p in lora.named_parameters()}
    weights = dict(rl_vllm.hf_named_weights(lora))
    assert set(weights) == plain_names
    assert all(torch.equal(p, before[n]) for n, p in lora.named_parameters())   # model left unmerged
    import copy

    merged = copy.deepcopy(lora).merge_and_unload().state_dict()
    assert all(torch.allclose(weights[k], merged[k], atol=1e-6) for k in merged)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(weights[q], before["base_model.model." + q.replace(".weight", ".base_layer.weight")])


@pytest.mark.skipif(not (HAS_VLLM and HAS_GPU), reason="needs vllm and a GPU")
def test_vllm_greedy_matches_hf_runner_and_weight_sync_takes_effect(tmp_path):  # pragma: no cover
    from reasonlab.engine.hf import HFRunner
    from reasonlab.engine.sampler import sample
    from reasonlab.models.checkpoint import save_checkpoint
    from reasonlab.models.tokenizer import CharTokenizer

    tok = CharTokenizer()
    torch.manual_seed(0)
    tiny = Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128))
    save_checkpoint(tmp_path / "m", tiny, tok)
    llm = rl_vllm.make_llm(str(tmp_path / "m"), dtype="float32", gpu_memory_utilization=0.2, enforce_eager=True)
    prompts = [tok.encode("What is 2 + 3?"), tok.encode("x = 4. What is x?")]
    greedy = SamplingConfig(max_new_tokens=16, temperature=0.0)
    got = rl_vllm.vllm_sample(llm, prompts, greedy, eos_id=tok.eos_id)
    from transformers import AutoModelForCausalLM

    ref_model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), dtype=torch.float32)
    ref = sample(HFRunner(ref_model), prompts, greedy, eos_id=tok.eos_id)
    assert got.completion_ids == ref.completion_ids
    with torch.no_grad():
        for p in tiny.parameters():
            p.mul_(-1.0)
    assert rl_vllm.sync_weights(llm, tiny) > 0
    after = rl_vllm.vllm_sample(llm, prompts, greedy, eos_id=tok.eos_id)
    assert after.completion_ids != got.completion_ids
