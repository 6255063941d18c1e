"""`reasonlab bench ... --device/--in_process/--extras`: the in-process (accelerator) code paths,
run on the CPU with tiny models. Every reported figure exists and is a positive number."""
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from reasonlab.bench.common import BenchConfig, run_bench
from reasonlab.config import ConfigError
from reasonlab.models.llama import Llama, LlamaConfig

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"
TINY = dict(d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, d_ff=64)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """A random Qwen2-shaped directory with a 256-token context (prompts get clipped)."""
    from reasonlab.models.random_models import random_config, save_random_model

    path = tmp_path_factory.mktemp("qwen2-tiny")
    save_random_model(path, random_config("qwen2-tiny"))
    return str(path)


def positive(out: dict, *keys: str) -> None:
    for key in keys:
        assert isinstance(out[key], (int, float)) and out[key] > 0, (key, out.get(key))


def test_decode_step_ms_times_a_tiny_runner():
    from reasonlab.bench.device import decode_step_ms
    from reasonlab.engine.tiny import LlamaRunner

    torch.manual_seed(0)
    runner = LlamaRunner(Llama(LlamaConfig(vocab_size=40, max_seq_len=64, **TINY)))
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    ms = decode_step_ms(runner, prompts, pad_id=0, rows=5, steps=3, device=torch.device("cpu"))
    assert ms > 0
    # prompts longer than the context leaves room for are cut, not refused
    assert decode_step_ms(runner, [list(range(3, 40)) * 2], 0, 2, 3, torch.device("cpu")) > 0


def test_hf_generate_static_cache_matches_the_work_of_the_dynamic_one(qwen_dir):
    from transformers import AutoModelForCausalLM, GenerationConfig

    from reasonlab.bench.device import hf_generate

    hf = AutoModelForCausalLM.from_pretrained(qwen_dir).eval()
    gen = GenerationConfig(do_sample=False, max_new_tokens=5, pad_token_id=0, eos_token_id=None, bos_token_id=None)
    ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    valid = ids != 0
    assert hf_generate(hf, ids, valid, gen) == hf_generate(hf, ids, valid, gen, static=True) == 10
    assert gen.cache_implementation is None                  # the caller's config is left alone


def test_static_side_falls_back_when_compiling_fails():
    """A machine without a compiler toolchain still gets the static-cache figure, uncompiled."""
    from transformers import GenerationConfig

    from reasonlab.bench.device import static_side

    class NoCompiler:
        def generate(self, input_ids, attention_mask, generation_config):
            assert generation_config.cache_implementation == "static"
            if not generation_config.disable_compile:
                raise RuntimeError("inductor: no C compiler")
            return torch.cat([input_ids, input_ids[:, :2]], 1)

    ids = torch.ones(3, 4, dtype=torch.long)
    fn, info = static_side(NoCompiler(), ids, ids > 0, GenerationConfig(max_new_tokens=2))
    assert fn() == 6 and info["hf_static_compiled"].startswith("failed, ran uncompiled (RuntimeError")

    class Broken(NoCompiler):
        def generate(self, input_ids, attention_mask, generation_config):
            raise RuntimeError("static cache unsupported")

    with pytest.raises(RuntimeError, match="unsupported"):     # compilation off: nothing to fall back to
        static_side(Broken(), ids, ids > 0, GenerationConfig(max_new_tokens=2), compile_ok=False)


def test_sampler_in_process_with_extras(qwen_dir):
    data = {"task": "gsm8k", "data_path": str(GSM8K)} if GSM8K.exists() else {}
    cfg = BenchConfig(what="sampler", model=qwen_dir, in_process=True, extras=True, prompts=3, new_tokens=4,
                      decode_rows=4, decode_steps=2, repeats=1, **data)
    out = run_bench(cfg)
    assert out["device"] == "cpu" and out["in_process"] is True and out["prompts"] == 3
    positive(out, "params", "ours_tokens_per_s", "hf_generate_tokens_per_s", "hf_static_tokens_per_s",
             "hf_tokens_per_s", "ratio", "decode_step_ms", "decode_tokens_per_s", "mean_prompt_tokens")
    assert out["hf_tokens_per_s"] == max(out["hf_generate_tokens_per_s"], out["hf_static_tokens_per_s"])
    assert all(out[f"{side}_first_call_s"] >= 0 for side in ("ours", "hf_generate", "hf_static"))
    assert out["hf_static_compiled"] is False and out["hf_static_warmup_s"] >= 0     # transformers compiles on CUDA
    if data:                                   # GSM8K prompts do not fit a 256-token context: cut
        assert out["clipped_prompts"] > 0 and out["mean_prompt_tokens"] <= 256 - 4


def test_sampler_in_process_without_extras_has_no_extra_fields():
    out = run_bench(BenchConfig(what="sampler", in_process=True, prompts=2, new_tokens=3, repeats=1,
                                model_cfg=LlamaConfig(**TINY)))
    positive(out, "ours_tokens_per_s", "hf_generate_tokens_per_s", "ratio")
    assert "hf_static_tokens_per_s" not in out and "decode_step_ms" not in out


def test_grpo_in_process_reports_ours_only_without_trl(qwen_dir):
    cfg = BenchConfig(what="grpo", model=qwen_dir, in_process=True, trl=False, prompts=2, n=2, new_tokens=4,
                      steps=1, repeats=1)
    out = run_bench(cfg)
    assert out["completions_per_step"] == 4 and out["in_process"] is True and out["device"] == "cpu"
    positive(out, "params", "ours_completions_per_s", "ours_rollout_s", "ours_update_s")
    assert out["trl"].startswith("skipped") and "ratio" not in out


def test_grpo_move_rebuilds_optimiser_and_sampler(tmp_path, qwen_dir):
    """The path that puts a set-up run on an accelerator, exercised with device=cpu."""
    from reasonlab.bench.grpo import _move, _ours

    ours = _ours(qwen_dir, tmp_path, 2, 2, BenchConfig(new_tokens=4), torch.device("cpu"), True)
    try:
        opt = ours.s.opt
        _move(ours.s, ours.gcfg, torch.device("cpu"))
        assert ours.s.opt is not opt and ours.s.sched.optimizer is ours.s.opt
        assert ours(1) > 0 and ours.rows[-1]["step"] == 1
    finally:
        ours.close()


def test_grpo_default_shape_per_device():
    from reasonlab.bench.grpo import grpo_shape

    assert grpo_shape(BenchConfig(), torch.device("cpu")) == (8, 8)
    assert grpo_shape(BenchConfig(), torch.device("cuda")) == (64, 8)
    assert grpo_shape(BenchConfig(prompts=3, n=2), torch.device("cuda")) == (3, 2)


def test_train_bench_reports_its_device():
    out = run_bench(BenchConfig(what="train", device="cpu", batch_size=2, seq_len=8, steps=1, repeats=1,
                                model_cfg=LlamaConfig(**TINY)))
    assert out["device"] == "cpu"
    positive(out, "ours_tokens_per_s", "hf_tokens_per_s", "ratio")


def test_device_names():
    from reasonlab.bench.device import bench_device, runs_in_process

    assert bench_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device: unknown value 'tpu'"):
        bench_device("tpu")
    assert not runs_in_process(BenchConfig()) and runs_in_process(BenchConfig(in_process=True))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            bench_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_cuda_without_cuda_is_one_line(capsys):
    from reasonlab.cli import main

    assert main(["bench", "sampler", "--device=cuda"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and err.count("\n") == 1
