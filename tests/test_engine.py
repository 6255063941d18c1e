"""Engine: KV cache (with shared prefix segments) equals full recomputation; sampling semantics."""
import pytest
import torch

from reasonlab.engine.attention import group_table
from reasonlab.engine.rng import row_uniforms
from reasonlab.engine.sampler import SamplingConfig, inverse_cdf, left_pad, next_tokens, sample
from reasonlab.engine.tiny import LlamaRunner, shared_prefix_length
from reasonlab.models.llama import Llama, LlamaConfig

EOS = 1


def tiny(seed=0, n_kv_heads=2):
    torch.manual_seed(seed)
    return Llama(LlamaConfig(vocab_size=40, d_model=64, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads,
                             d_ff=96, max_seq_len=128))


def prompts_with_shared_prefix():
    common = list(range(3, 15))                        # 12 tokens shared by every prompt
    return [common + [20, 21, 22], common + [23], common + [24, 25, 26, 27, 28, 29], common + [30, 31]]


@torch.no_grad()
def reference_greedy(model, prompt, steps):
    """Plain loop: recompute the full forward pass for every new token."""
    ids, logps = list(prompt), []
    for _ in range(steps):
        logits = model(torch.tensor([ids]))[0, -1]
        tok = int(logits.argmax())
        logps.append(float(torch.log_softmax(logits, -1)[tok]))
        ids.append(tok)
    return ids[len(prompt):], logps


@pytest.mark.parametrize("merge", [0, 64])
@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
@pytest.mark.parametrize("prompts", [prompts_with_shared_prefix(), [[5, 6, 7], [8], [9, 10, 11, 12, 13]]])
def test_kv_cache_greedy_equals_recompute(prompts, n_kv_heads, merge):
    model = tiny(n_kv_heads=n_kv_heads)
    cfg = SamplingConfig(n=2, max_new_tokens=10, temperature=0.0)
    batch = sample(LlamaRunner(model, merge_prefix_below=merge), prompts, cfg, eos_id=-1)
    for row, p in enumerate(batch.prompt_index):
        ref_ids, ref_lp = reference_greedy(model, prompts[p], 10)
        assert batch.completion_ids[row] == ref_ids
        assert batch.logprobs[row] == pytest.approx(ref_lp, abs=1e-4)


@torch.no_grad()
@pytest.mark.parametrize("merge", [0, 64])
def test_decode_logits_match_full_forward(merge):
    model = tiny()
    runner = LlamaRunner(model, merge_prefix_below=merge)
    prompts = prompts_with_shared_prefix()
    ids, valid = left_pad(prompts, 0)
    logits, state = runner.prefill(ids, valid, max_new=4, copies=3)
    seqs = [p for p in prompts for _ in range(3)]
    for step in range(4):
        ref = torch.stack([model(torch.tensor([s]))[0, -1] for s in seqs])
        assert torch.allclose(logits, ref, atol=1e-4)
        nxt = torch.arange(len(seqs)) % 30 + 3
        seqs = [s + [int(t)] for s, t in zip(seqs, nxt)]
        if step == 1:                                  # drop rows mid-way, groups change
            keep = torch.tensor([0, 2, 5, 6, 11])
            state = runner.select(state, keep)
            seqs, nxt = [seqs[i] for i in keep], nxt[keep]
        logits = runner.decode(state, nxt)


def test_prompt_encoded_once_for_n_samples():
    runner = LlamaRunner(tiny())
    prompts = prompts_with_shared_prefix()
    sample(runner, prompts, SamplingConfig(n=8, max_new_tokens=5), eos_id=-1)
    real = sum(len(p) for p in prompts)
    shared = shared_prefix_length(*left_pad(prompts, 0))
    assert shared == 12
    # the common template once, each prompt's remainder once, then one token per row per step
    assert runner.tokens_encoded == real - shared * (len(prompts) - 1) + 4 * len(prompts) * 8


def test_group_table_roundtrip():
    group = torch.tensor([0, 0, 0, 1, 2, 2])
    table, slot = group_table(group, 3)
    assert table[group, slot].tolist() == list(range(6))
    assert (table == 6).sum() == 3 * 3 - 6


def test_bf16_runner_close_to_fp32():
    model = tiny()
    prompts = prompts_with_shared_prefix()
    ids, valid = left_pad(prompts, 0)
    a, _ = LlamaRunner(model).prefill(ids, valid, 2)
    b, _ = LlamaRunner(model, dtype=torch.bfloat16).prefill(ids, valid, 2)
    assert (torch.softmax(a, -1) - torch.softmax(b, -1)).abs().max() < 0.05


def test_eos_stop_and_length_finish_reasons():
    model = tiny()
    runner = LlamaRunner(model)
    prompt = [[3, 4, 5]]
    greedy, _ = reference_greedy(model, prompt[0], 6)
    cfg = SamplingConfig(n=1, max_new_tokens=6, temperature=0.0)
    out = sample(runner, prompt, cfg, eos_id=greedy[2])
    assert out.completion_ids[0] == greedy[:3] and out.finish_reasons == ["eos"]
    out = sample(runner, prompt, cfg, eos_id=-1, stop_ids=[greedy[1:3]])
    assert out.completion_ids[0] == greedy[:3] and out.finish_reasons == ["stop"]
    out = sample(runner, prompt, cfg, eos_id=-1)
    assert out.completion_ids[0] == greedy and out.finish_reasons == ["length"]


def test_sampling_is_seeded_and_mask_marks_sampled_tokens():
    runner = LlamaRunner(tiny())
    prompts = [[3, 4, 5], [6, 7]]
    cfg = SamplingConfig(n=3, max_new_tokens=8, temperature=1.0, seed=7)
    a, b = sample(runner, prompts, cfg, eos_id=EOS), sample(runner, prompts, cfg, eos_id=EOS)
    assert a.completion_ids == b.completion_ids
    ids, lps, mask = a.tensors()
    for row in range(len(a)):
        plen = len(prompts[a.prompt_index[row]])
        assert not mask[row, :plen].any()
        assert mask[row].sum() == len(a.completion_ids[row])
        assert ids[row, :plen].tolist() == prompts[a.prompt_index[row]]
        assert (lps[row][mask[row]] <= 0).all()


def test_top_k_one_and_tiny_top_p_are_greedy():
    torch.manual_seed(0)
    logits = torch.randn(64, 50)
    greedy = logits.argmax(-1)
    u = torch.rand(64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(next_tokens(logits, 1.0, 1, 1.0, u)[0], greedy)
    assert torch.equal(next_tokens(logits, 1.0, 0, 1e-6, u)[0], greedy)


def test_sampling_matches_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(20000, 1)
    u = row_uniforms(0, torch.arange(20000), torch.zeros(20000, dtype=torch.long), 0)
    tok, lp = next_tokens(logits, 1.0, 0, 1.0, u)
    freq = torch.bincount(tok, minlength=3).float() / tok.numel()
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.02)
    assert torch.allclose(lp, torch.log(torch.tensor([0.5, 0.3, 0.2]))[tok])
    tok, lp = next_tokens(logits, 1.0, 2, 1.0, u)             # top-k 2 renormalises over {0, 1}
    assert (tok != 2).all()
    freq = torch.bincount(tok, minlength=3).float() / tok.numel()
    assert abs(freq[0] - 0.625) < 0.02
    # logprobs stay those of the untruncated policy (what RL ratios need)
    assert torch.allclose(lp, torch.log(torch.tensor([0.5, 0.3, 0.2]))[tok])


def test_prompt_too_long_is_a_clear_error():
    runner = LlamaRunner(tiny())
    with pytest.raises(ValueError, match="exceeds the model's context of 128 tokens"):
        sample(runner, [[3] * 120], SamplingConfig(max_new_tokens=20), eos_id=EOS)


def test_parallel_sampler_matches_single_process():
    from reasonlab.engine.parallel import ParallelSampler

    model = tiny()
    prompts = prompts_with_shared_prefix() + [[5, 6, 7], [8, 9]]
    greedy = SamplingConfig(n=2, max_new_tokens=6, temperature=0.0)
    single = sample(LlamaRunner(model), prompts, greedy, eos_id=EOS)
    with ParallelSampler(model, workers=2) as pool:
        multi = pool.sample(prompts, greedy, eos_id=EOS)
        assert multi.prompt_index == single.prompt_index
        assert multi.completion_ids == single.completion_ids
        for a, b in zip(multi.logprobs, single.logprobs):
            assert a == pytest.approx(b, abs=1e-5)
        hot = SamplingConfig(n=3, max_new_tokens=6, temperature=1.0, seed=3)
        assert pool.sample(prompts, hot, eos_id=EOS).completion_ids == \
            pool.sample(prompts, hot, eos_id=EOS).completion_ids          # seeded, not timing-dependent
        with pytest.raises(ValueError, match="context"):
            pool.sample([[3] * 200], greedy, eos_id=EOS)                   # worker errors reach the caller


def test_samples_do_not_depend_on_worker_count_or_batch():
    """A row's random stream is (seed, prompt key, sample, step): one process, two workers, the
    prompts in another order (with their keys) or one prompt alone give the same samples."""
    from reasonlab.engine.parallel import ParallelSampler

    model = tiny()
    prompts = prompts_with_shared_prefix() + [[5, 6, 7], [8, 9]]
    hot = SamplingConfig(n=3, max_new_tokens=8, temperature=1.0, seed=11)
    single = sample(LlamaRunner(model), prompts, hot, eos_id=EOS)
    with ParallelSampler(model, workers=2) as pool:
        multi = pool.sample(prompts, hot, eos_id=EOS)
    assert multi.completion_ids == single.completion_ids
    order = list(reversed(range(len(prompts))))
    shuffled = sample(LlamaRunner(model), [prompts[i] for i in order], hot, eos_id=EOS, keys=order)
    by_prompt = {(shuffled.prompt_index[r], r % 3): c for r, c in enumerate(shuffled.completion_ids)}
    for r, c in enumerate(single.completion_ids):
        assert by_prompt[(len(prompts) - 1 - single.prompt_index[r], r % 3)] == c
    alone = sample(LlamaRunner(model), [prompts[2]], hot, eos_id=EOS, keys=[2])
    assert alone.completion_ids == single.completion_ids[6:9]
    other = sample(LlamaRunner(model), prompts, SamplingConfig(n=3, max_new_tokens=8, seed=12), eos_id=EOS)
    assert other.completion_ids != single.completion_ids


def test_row_uniforms_are_uniform_and_independent():
    keys = torch.arange(4000).repeat_interleave(5)
    samples = torch.arange(5).repeat(4000)
    u = row_uniforms(3, keys, samples, 0)
    assert u.min() > 0 and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.003
    hist = torch.histc(u.float(), bins=10, min=0, max=1)
    assert (hist - 2000).abs().max() < 200                 # chi-square-ish: 10 bins of 2000
    v = row_uniforms(3, keys, samples, 1)                  # next step: uncorrelated with this one
    assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < 0.03
    assert torch.equal(u, row_uniforms(3, keys, samples, 0))
    assert not torch.equal(u, row_uniforms(4, keys, samples, 0))
    assert len(set(u.tolist())) > 19_900                   # distinct rows, distinct numbers


def test_inverse_cdf_never_draws_a_zero_probability_token():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]]).repeat(5, 1)
    u = torch.tensor([1e-12, 0.25, 0.5, 0.75, 1 - 1e-12], dtype=torch.float64)
    assert inverse_cdf(probs, u).tolist() == [1, 1, 3, 3, 3]
    unnormalised = torch.tensor([[2.0, 0.0, 6.0]]).repeat(2, 1)
    assert inverse_cdf(unnormalised, torch.tensor([0.24, 0.26], dtype=torch.float64)).tolist() == [0, 2]


FEATURES = [{"qkv_bias": True, "family": "qwen2"},
            {"qk_norm": True, "attn_head_dim": 24, "family": "qwen3"},
            {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8}, "tie_embeddings": True},
            {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}]


@pytest.mark.parametrize("features", FEATURES, ids=["qkv_bias", "qk_norm", "llama3_rope", "linear_rope"])
def test_kv_cache_equals_recompute_with_family_features(features):
    """Qwen2 / Qwen3 / Llama 3 features through the engine: greedy with the shared-prefix cache
    equals recomputation (random biases and norm gains, so a missing one would show)."""
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=40, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=96,
                              max_seq_len=128, **features))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.endswith(("bias", "q_norm", "k_norm")):
                p.copy_(torch.randn_like(p) * 0.5 + (0.0 if name.endswith("bias") else 1.0))
    prompts = prompts_with_shared_prefix()
    batch = sample(LlamaRunner(model, merge_prefix_below=0), prompts, SamplingConfig(n=2, max_new_tokens=8,
                                                                                   temperature=0.0), eos_id=-1)
    for row, p in enumerate(batch.prompt_index):
        ref_ids, ref_lp = reference_greedy(model, prompts[p], 8)
        assert batch.completion_ids[row] == ref_ids
        assert batch.logprobs[row] == pytest.approx(ref_lp, abs=1e-4)
