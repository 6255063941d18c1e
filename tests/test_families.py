"""Hugging Face Llama (Llama 3 RoPE scaling, tied), Qwen2 (q/k/v biases) and Qwen3 (q/k norm,
head_dim != hidden / heads) directories run through our model code and engine with transformers'
numbers: logits, greedy tokens, sampled log-probs, KV cache, save back, shards, config errors."""
import json
import shutil
from dataclasses import asdict

import pytest
import torch

transformers = pytest.importorskip("transformers")

from reasonlab.config import ConfigError
from reasonlab.engine.sampler import SamplingConfig, left_pad, sample
from reasonlab.engine.tiny import LlamaRunner
from reasonlab.io import DataError
from reasonlab.models.checkpoint import load_checkpoint, save_checkpoint
from reasonlab.models.families import config_from_hf, load_pretrained
from reasonlab.models.hf import HFTokenizer, LoraOptions, load_policy, make_runner
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.random_models import plain_tokenizer, save_random_model
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.train.logprobs import _full_sequence_logprobs, completion_logprobs

VOCAB = 300
COMMON = {"vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
          "eos_token_id": 1, "pad_token_id": 0, "bos_token_id": None}
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**COMMON, tie_word_embeddings=True, rope_theta=500000.0,
                                              rope_scaling=dict(LLAMA3_ROPE)),
    "qwen2": lambda: transformers.Qwen2Config(**COMMON, tie_word_embeddings=False),
    "qwen3": lambda: transformers.Qwen3Config(**COMMON, head_dim=24),
}
FAMILIES = list(CONFIGS)


def build_hf(directory, family: str, **overrides):
    """A random transformers model of ``family`` saved with our character tokenizer. Biases and
    norm gains get random values, so a missing bias or norm would change the logits."""
    config = CONFIGS[family]()
    for key, value in overrides.items():
        setattr(config, key, value)
    return save_random_model(directory, config)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    out = {}
    for family in FAMILIES:
        hf = build_hf(root / family, family)
        ours, tok = load_pretrained(root / family)
        out[family] = (root / family, hf, ours, tok)
    return out


def random_ids(rows=3, length=40, seed=1):
    return torch.randint(3, VOCAB, (rows, length), generator=torch.Generator().manual_seed(seed))


def prompts(seed=2):
    """Left-padded lengths and a 10-token shared head (the engine's shared-prefix segment)."""
    g = torch.Generator().manual_seed(seed)
    head = torch.randint(3, VOCAB, (10,), generator=g).tolist()
    return [head + torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (3, 9, 1)]


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_logits_equal_transformers_and_every_feature_matters(dirs, family):
    _, hf, ours, tok = dirs[family]
    assert isinstance(ours, Llama) and isinstance(tok, HFTokenizer)
    assert all(p.dtype == torch.float32 for p in ours.parameters())
    ids = random_ids()
    want = hf(ids).logits
    assert (ours(ids) - want).abs().max() <= 1e-4
    cfg = ours.cfg
    assert cfg.family == family and cfg.tie_embeddings == (family == "llama")
    assert (cfg.rope_scaling is not None, cfg.qkv_bias, cfg.qk_norm, cfg.head_dim) == {
        "llama": (True, False, False, 16), "qwen2": (False, True, False, 16), "qwen3": (False, False, True, 24)}[family]
    if cfg.tie_embeddings:
        assert ours.lm_head.weight is ours.embed.weight
    # the feature under test is not a no-op on these weights
    ablated = Llama(LlamaConfig(**{**asdict(cfg), "rope_scaling": None}))
    ablated.load_state_dict(ours.state_dict())
    with torch.no_grad():
        for layer in ablated.layers:
            if cfg.qkv_bias:
                layer.qkv.bias.zero_()
            if cfg.qk_norm:
                layer.q_norm.fill_(1.0)
    assert (ablated(ids) - want).abs().max() > 1e-3       # 10x the tolerance above


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_through_our_engine_equals_transformers_generate(dirs, family):
    _, hf, ours, tok = dirs[family]
    batch = sample(make_runner(ours), prompts(), SamplingConfig(max_new_tokens=12, temperature=0.0),
                   eos_id=tok.eos_id, pad_id=tok.pad_id)
    for p, got in zip(prompts(), batch.completion_ids):
        want = hf.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                           max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_id,
                           pad_token_id=tok.pad_id)[0, len(p):].tolist()
        assert got == want


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_sampled_logprobs_equal_a_full_forward(dirs, family):
    _, hf, ours, tok = dirs[family]
    cfg = SamplingConfig(n=3, max_new_tokens=10, temperature=1.0, top_k=30, seed=3)
    stops = [[i] for i in range(3, 60)]               # rows end at different steps: compaction
    batch = sample(LlamaRunner(ours), prompts(), cfg, eos_id=tok.eos_id, pad_id=tok.pad_id, stop_ids=stops)
    assert len(batch) == 9
    for i in range(len(batch)):
        prompt, completion = batch.prompt_ids[batch.prompt_index[i]], batch.completion_ids[i]
        seq = torch.tensor([prompt + completion])
        logp = hf(seq).logits.float().log_softmax(-1)[0, len(prompt) - 1: -1]
        ref = logp.gather(1, seq[0, len(prompt):, None])[:, 0]
        assert torch.allclose(ref, torch.tensor(batch.logprobs[i]), atol=1e-4), i


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_kv_cache_with_forks_equals_full_forward(dirs, family):
    _, _, ours, _ = dirs[family]
    runner = LlamaRunner(ours)
    ps = prompts()
    logits, state = runner.prefill(*left_pad(ps, 0), max_new=6, copies=2)
    seqs = [list(p) for p in ps for _ in range(2)]
    g = torch.Generator().manual_seed(4)
    for step in range(5):
        ref = torch.stack([ours(torch.tensor([s]))[0, -1] for s in seqs])
        assert torch.allclose(logits, ref, atol=1e-4), step
        if step == 2:                                     # fork row 1, drop row 0
            rows = torch.tensor([1, 1, 2, 3, 4, 5])
            state, logits = runner.select(state, rows), logits[rows]
            seqs = [list(seqs[r]) for r in rows.tolist()]
        tokens = torch.randint(3, VOCAB, (len(seqs),), generator=g)
        logits = runner.decode(state, tokens)
        for s, t in zip(seqs, tokens.tolist()):
            s.append(t)


@pytest.mark.parametrize("family", FAMILIES)
def test_grouped_training_logprobs_equal_the_plain_path(dirs, family):
    _, _, ours, _ = dirs[family]
    ps = prompts()
    prompt_len = torch.tensor([len(p) for p in ps])
    prompt_ids = torch.zeros(len(ps), int(prompt_len.max()), dtype=torch.long)   # right-padded
    for i, p in enumerate(ps):
        prompt_ids[i, : len(p)] = torch.tensor(p)
    ids = random_ids(rows=5, length=7, seed=5)
    group = torch.tensor([0, 0, 1, 2, 2])
    with torch.no_grad():
        grouped = completion_logprobs(ours, prompt_ids, prompt_len, ids, group)
        plain = _full_sequence_logprobs(ours, prompt_ids, prompt_len, ids, group, False)
    assert torch.allclose(grouped, plain, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_trained_policy_saves_back_as_a_directory_transformers_loads(dirs, family, tmp_path):
    _, _, loaded, tok = dirs[family]
    model = Llama(LlamaConfig(**asdict(loaded.cfg)))          # what a parallel worker rebuilds
    model.load_state_dict(loaded.state_dict())
    ids = random_ids(rows=2, length=20, seed=6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.loss(ids[:, :-1], ids[:, 1:]).backward()
    opt.step()                                                # every tensor moves away from the source
    save_checkpoint(tmp_path / "out", model, tok, trainer_state={"step": 1})
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["model_type"] == family
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    ids = random_ids(seed=7)
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)).abs().max() <= 1e-4
    again, tok2, kind = load_policy(tmp_path / "out", impl="auto", device="cpu")
    assert kind == "tiny" and isinstance(tok2, HFTokenizer) and again.cfg == model.cfg
    back, _, state = load_checkpoint(tmp_path / "out")       # resume path: same model, trainer state
    assert state == {"step": 1}
    with torch.no_grad():
        assert torch.equal(again(ids), model(ids)) and torch.equal(back(ids), model(ids))


@pytest.mark.parametrize("family", ["qwen3"])
def test_sharded_safetensors_load(dirs, family, tmp_path):
    _, hf, ours, _ = dirs[family]
    hf.save_pretrained(str(tmp_path), max_shard_size="40KB")
    plain_tokenizer().save_pretrained(str(tmp_path))
    assert (tmp_path / "model.safetensors.index.json").exists() and len(list(tmp_path.glob("*.safetensors"))) > 2
    sharded, _ = load_pretrained(tmp_path)
    ids = random_ids(seed=8)
    with torch.no_grad():
        assert torch.equal(sharded(ids), ours(ids))


UNSUPPORTED = [
    ("qwen2", {"use_sliding_window": True, "sliding_window": 8}, "use_sliding_window"),
    ("llama", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
    ("llama", {"rope_scaling": None, "rope_parameters": {"rope_type": "dynamic", "factor": 2.0}}, "rope_parameters"),
    ("llama", {"attention_bias": True}, "attention_bias"),
    ("qwen3", {"attention_bias": True}, "attention_bias"),
    ("llama", {"mlp_bias": True}, "mlp_bias"),
    ("qwen2", {"hidden_act": "gelu"}, "hidden_act"),
    ("qwen3", {"layer_types": ["full_attention", "sliding_attention"]}, "layer_types"),
    ("mistral", {}, "model_type"),
]


@pytest.mark.parametrize("family,change,field", UNSUPPORTED)
def test_unsupported_config_fields_raise_config_error_naming_the_field(dirs, family, change, field):
    source = dirs["llama" if family == "mistral" else family][0]
    meta = {**json.loads((source / "config.json").read_text()), **change}
    if family == "mistral":
        meta["model_type"] = "mistral"
    with pytest.raises(ConfigError, match=f"^{field}: ") as err:
        config_from_hf(meta)
    assert "\n" not in str(err.value)


def test_linear_rope_and_legacy_rope_keys_load(tmp_path):
    hf = build_hf(tmp_path, "llama", rope_scaling=None,
                  rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 20000.0})
    ours, _ = load_pretrained(tmp_path)
    assert ours.cfg.rope_scaling == {"rope_type": "linear", "factor": 2.0} and ours.cfg.rope_theta == 20000.0
    ids = random_ids()
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max() <= 1e-4
    legacy = json.loads((tmp_path / "config.json").read_text())
    legacy.pop("rope_parameters")
    legacy.update(rope_theta=20000.0, rope_scaling={"type": "linear", "factor": 2.0})
    assert config_from_hf(legacy) == ours.cfg


def test_load_policy_routing(dirs, tmp_path):
    path = dirs["qwen3"][0]
    _, _, kind = load_policy(path, device="cpu", dtype="float32", impl=None)      # the legacy routing
    assert kind == "hf"
    model, tok, kind = load_policy(path, device="cpu")                           # default: auto
    assert kind == "tiny" and isinstance(model, Llama) and isinstance(make_runner(model), LlamaRunner)
    assert isinstance(tok, HFTokenizer) and tok.eos_id == 1
    assert load_policy(path, device="cpu", dtype="float32", impl="transformers")[2] == "hf"
    assert load_policy(path, device="cpu", dtype="float32", impl="auto", lora=LoraOptions(r=2))[2] == "hf"
    with pytest.raises(ConfigError, match="^impl: unknown value"):
        load_policy(path, impl="fast")
    # a supported family with a field we do not implement: ConfigError, not DataError
    bad = tmp_path / "sliding"
    shutil.copytree(dirs["qwen2"][0], bad)
    meta = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**meta, "use_sliding_window": True}))
    with pytest.raises(ConfigError, match="^use_sliding_window: "):
        load_policy(bad, device="cpu", impl="auto")
    # weights the config does not account for (an o_proj bias) are refused, not ignored
    extra = tmp_path / "extra"
    shutil.copytree(dirs["qwen2"][0], extra)
    from safetensors.torch import load_file, save_file

    sd = load_file(str(extra / "model.safetensors"))
    sd["model.layers.0.self_attn.o_proj.bias"] = torch.zeros(64)
    save_file(sd, str(extra / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(DataError, match="o_proj.bias"):
        load_policy(extra, device="cpu", impl="ours")


def test_tiny_checkpoints_still_route_to_our_code_under_every_impl_but_transformers(tmp_path):
    tok = CharTokenizer()
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ck", Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1,
                                                       n_heads=2, n_kv_heads=2, d_ff=64)), tok)
    for impl in (None, "auto", "ours"):
        model, tok2, kind = load_policy(tmp_path / "ck", impl=impl)
        assert kind == "tiny" and isinstance(tok2, CharTokenizer)
    assert load_policy(tmp_path / "ck", device="cpu", dtype="float32", impl="transformers")[2] == "hf"


@torch.no_grad()
def test_bf16_sampling_copy_tracks_fp32(dirs):
    _, _, ours, _ = dirs["qwen3"]
    ids, valid = left_pad(prompts(), 0)
    full, _ = LlamaRunner(ours).prefill(ids, valid, max_new=2)
    half, _ = LlamaRunner(ours, dtype=torch.bfloat16).prefill(ids, valid, max_new=2)
    assert next(ours.parameters()).dtype == torch.float32
    assert torch.allclose(half, full, atol=0.15)


def test_parallel_workers_rebuild_a_qwen3_model_from_its_config(dirs):
    """``engine.parallel`` rebuilds the model from ``asdict(model.cfg)`` in spawned workers."""
    from reasonlab.engine.parallel import ParallelSampler

    _, _, ours, tok = dirs["qwen3"]
    greedy = SamplingConfig(max_new_tokens=6, temperature=0.0)
    local = sample(LlamaRunner(ours), prompts(), greedy, eos_id=tok.eos_id, pad_id=tok.pad_id)
    with ParallelSampler(ours, workers=2) as pool:
        assert pool.sample(prompts(), greedy, eos_id=tok.eos_id, pad_id=tok.pad_id).completion_ids == \
            local.completion_ids
