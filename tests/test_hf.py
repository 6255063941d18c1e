"""Hugging Face adapter: tiny random Llama and Qwen2 models built locally (no network) run
sample -> eval -> one training step (full and LoRA) through the same code as the tiny model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from reasonlab.cli import main
from reasonlab.config import ConfigError
from reasonlab.engine.hf import HFRunner
from reasonlab.engine.sampler import SamplingConfig, left_pad, sample
from reasonlab.engine.tiny import LlamaRunner
from reasonlab.models.checkpoint import save_checkpoint
from reasonlab.models.hf import (
    HFTokenizer,
    LoraOptions,
    forward_logits,
    lm_loss,
    load_policy,
    make_runner,
    merge_lora,
)
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
CHAT = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
ARCHS = ["llama", "qwen2"]


def train_bpe_tokenizer(directory: Path):
    """A small byte-level BPE tokenizer with a Qwen-style chat template, trained on task prompts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from reasonlab.tasks import get_task

    task = get_task("arith")
    texts = [task.format_prompt(p, "r1") + p["answer"] for p in task.generate(300, seed=0)]
    texts += ["Natalia sold clips to 48 of her friends in April, and then she sold half as many in May."]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT
    fast.save_pretrained(str(directory))
    return fast


def build_tiny_hf(directory: Path, arch: str) -> Path:
    """A random 2-layer model: ``llama`` with our character tokenizer (no chat template),
    ``qwen2`` with a byte-level BPE tokenizer and a chat template."""
    if arch == "llama":
        tok = CharTokenizer()
        tok.save(directory)
        vocab, eos, pad = tok.vocab_size, tok.eos_id, tok.pad_id
    else:
        tok = train_bpe_tokenizer(directory)
        vocab, eos, pad = len(tok), tok.eos_token_id, tok.pad_token_id
    common = {"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
              "eos_token_id": eos, "pad_token_id": pad, "bos_token_id": None}
    config = transformers.LlamaConfig(**common) if arch == "llama" else transformers.Qwen2Config(**common)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {arch: build_tiny_hf(root / arch, arch) for arch in ARCHS}


def load(hf_dirs, arch, **kw):
    """The transformers adapter (``impl="transformers"``; the default routes these families to our code)."""
    kw.setdefault("dtype", "float32")
    kw.setdefault("impl", "transformers")
    return load_policy(hf_dirs[arch], device="cpu", **kw)


def reference_logprobs(model, prompt, completion):
    """Logprobs of ``completion`` after ``prompt`` from one full forward pass (no cache, no padding)."""
    seq = torch.tensor([prompt + completion])
    logp = forward_logits(model, seq).float().log_softmax(-1)[0]
    return logp[len(prompt) - 1: -1].gather(1, seq[0, len(prompt):, None])[:, 0]


def test_import_reasonlab_does_not_import_transformers():
    code = ("import sys, reasonlab, reasonlab.cli, reasonlab.eval.run, reasonlab.models.hf, reasonlab.engine.hf, "
            "reasonlab.runs, reasonlab.checks, reasonlab.train.distributed, reasonlab.train.pretrain; "
            "bad = [m for m in ('transformers', 'peft', 'trl') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("arch", ARCHS)
def test_sampled_logprobs_equal_full_forward(hf_dirs, arch):
    model, tok, kind = load(hf_dirs, arch)
    assert kind == "hf" and isinstance(tok, HFTokenizer)
    prompts = [tok.prompt_ids("What is 2 + 3?"), tok.prompt_ids("x = 1. y = x + 2. What is y?")]
    runner = make_runner(model)
    assert isinstance(runner, HFRunner)
    # Many single-token stops: rows end at different steps, so the batch is compacted (select).
    stops = [[i] for i in range(3, 40)]
    cfg = SamplingConfig(n=3, max_new_tokens=12, temperature=1.0, top_k=20, seed=1)
    batch = sample(runner, prompts, cfg, eos_id=tok.eos_id, pad_id=tok.pad_id, stop_ids=stops)
    assert len(batch) == 6 and batch.prompt_index == [0, 0, 0, 1, 1, 1]
    assert len({len(c) for c in batch.completion_ids}) > 1 and "stop" in batch.finish_reasons
    for i in range(len(batch)):
        ref = reference_logprobs(model, batch.prompt_ids[batch.prompt_index[i]], batch.completion_ids[i])
        assert torch.allclose(ref, torch.tensor(batch.logprobs[i]), atol=1e-4), i
    _, _, mask = batch.tensors(tok.pad_id)
    assert mask.sum() == sum(len(c) for c in batch.completion_ids)


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_equals_transformers_generate(hf_dirs, arch):
    model, tok, _ = load(hf_dirs, arch)
    prompts = [tok.prompt_ids("What is 2 + 3?"), tok.prompt_ids("a = 4. b = a * 2. What is b?")]
    batch = sample(make_runner(model), prompts, SamplingConfig(max_new_tokens=16, temperature=0.0),
                   eos_id=tok.eos_id, pad_id=tok.pad_id)
    for p, got in zip(prompts, batch.completion_ids):
        want = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                              max_new_tokens=16, do_sample=False, eos_token_id=tok.eos_id,
                              pad_token_id=tok.pad_id)[0, len(p):].tolist()
        assert got == want


def test_prefill_encodes_each_prompt_once_and_bf16_copy(hf_dirs):
    model, tok, _ = load(hf_dirs, "llama")
    prompts = [tok.encode("abc"), tok.encode("defgh")]
    runner = HFRunner(model)
    logits, state = runner.prefill(*left_pad(prompts, tok.pad_id), max_new=4, copies=5)
    assert logits.shape == (10, tok.vocab_size) and runner.tokens_encoded == 3 + 5
    assert torch.equal(logits[0], logits[4]) and torch.equal(logits[5], logits[9])
    runner.decode(state, torch.zeros(10, dtype=torch.long), active=torch.arange(10) < 4)
    assert runner.tokens_encoded == 8 + 4
    half = HFRunner(model, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32
    low, _ = half.prefill(*left_pad(prompts, tok.pad_id), max_new=4)
    assert torch.allclose(low, logits[::5], atol=0.1)


def test_active_mask_select_with_repeats_and_concat_follow_each_rows_context(hf_dirs):
    model, tok, _ = load(hf_dirs, "llama")
    runner = HFRunner(model)

    def check(logits, contexts, rows):
        for r in rows:
            want = forward_logits(model, torch.tensor([contexts[r]]))[0, -1].float()
            assert torch.allclose(logits[r], want, atol=1e-4), r

    prompts = [tok.encode("x = 3"), tok.encode("What is 12 + 7?"), tok.encode("ab")]
    ctx = [list(p) for p in prompts]
    logits, state = runner.prefill(*left_pad(prompts, tok.pad_id), max_new=8)
    check(logits, ctx, range(3))
    step = torch.tensor([40, 41, 42])
    active = torch.tensor([True, False, True])
    logits = runner.decode(state, step, active)
    for r in (0, 2):
        ctx[r].append(int(step[r]))
    check(logits, ctx, (0, 2))
    state = runner.select(state, torch.tensor([1, 1, 0]))          # fork row 1 twice, keep row 0
    ctx = [ctx[1], list(ctx[1]), ctx[0]]
    step = torch.tensor([50, 51, 52])
    logits = runner.decode(state, step)
    for r in range(3):
        ctx[r].append(int(step[r]))
    check(logits, ctx, range(3))
    other_prompts = [tok.encode("What is 1 + 2 + 3 + 4 + 5?")]
    _, other = runner.prefill(*left_pad(other_prompts, tok.pad_id), max_new=8)
    merged = runner.concat([state, other])
    ctx.append(list(other_prompts[0]))
    step = torch.tensor([60, 61, 62, 63])
    logits = runner.decode(merged, step)
    for r in range(4):
        ctx[r].append(int(step[r]))
    check(logits, ctx, range(4))


def test_chat_template_modes(hf_dirs):
    _, plain, _ = load(hf_dirs, "llama")
    assert not plain.use_chat and plain.prompt_ids("hi") == plain.encode("hi")
    _, chat, _ = load(hf_dirs, "qwen2")
    assert chat.use_chat
    assert chat.decode(chat.prompt_ids("hi"), skip_special=False) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    text = "x = 12 * 3.\n  What is x? <answer>36</answer>"
    assert chat.decode(chat.encode(text)) == text and plain.decode(plain.encode(text)) == text
    _, never, _ = load(hf_dirs, "qwen2", chat_template="never")
    assert never.prompt_ids("hi") == never.encode("hi")
    with pytest.raises(ValueError, match="no chat template"):
        load(hf_dirs, "llama", chat_template="always")
    with pytest.raises(ConfigError, match="no model directory at /nonexistent/model/dir"):
        load_policy("/nonexistent/model/dir", device="cpu")


def test_load_policy_returns_tiny_model_for_reasonlab_checkpoints(tmp_path):
    tok = CharTokenizer()
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ck", Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1,
                                                       n_heads=2, n_kv_heads=2, d_ff=64)), tok)
    model, tok2, kind = load_policy(tmp_path / "ck")
    assert kind == "tiny" and isinstance(model, Llama) and isinstance(tok2, CharTokenizer)
    assert isinstance(make_runner(model), LlamaRunner) and tok2.prompt_ids("x = 1") == tok2.encode("x = 1")


def _batch_for_training(model, tok):
    prompts = [tok.prompt_ids("What is 2 + 3?"), tok.prompt_ids("a = 1")]
    batch = sample(make_runner(model), prompts, SamplingConfig(n=2, max_new_tokens=8, seed=0),
                   eos_id=tok.eos_id, pad_id=tok.pad_id)
    ids, _, mask = batch.tensors(tok.pad_id)
    targets = torch.where(mask[:, 1:], ids[:, 1:], torch.full_like(ids[:, 1:], -100))
    return ids[:, :-1], targets


@pytest.mark.parametrize("arch", ARCHS)
def test_one_full_training_step_changes_every_parameter(hf_dirs, arch):
    model, tok, _ = load(hf_dirs, arch)
    x, y = _batch_for_training(model, tok)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = lm_loss(model, x, y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged
    with torch.no_grad():
        assert float(lm_loss(model, x, y)) < float(loss.detach())


@pytest.mark.parametrize("arch", ARCHS)
def test_one_lora_step_trains_adapters_only_and_merges_to_a_plain_model(hf_dirs, arch, tmp_path):
    pytest.importorskip("peft")
    model, tok, _ = load(hf_dirs, arch, lora=LoraOptions(r=4, alpha=8))
    x, y = _batch_for_training(model, tok)
    model.train()
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    lm_loss(model, x, y).backward()
    opt.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert all(not torch.equal(params[n], v) for n, v in trainable.items() if "lora_B" in n)
    model.eval()
    want = forward_logits(model, x)
    merged = merge_lora(model)
    merged.save_pretrained(str(tmp_path / "merged"))
    tok.save(tmp_path / "merged")
    loaded, _, kind = load_policy(tmp_path / "merged", device="cpu", dtype="float32", impl="transformers")
    assert kind == "hf" and not hasattr(loaded, "peft_config")
    assert torch.allclose(forward_logits(loaded, x), want, atol=1e-4)


def test_cli_eval_gsm8k_end_to_end(hf_dirs, tmp_path):
    if not (GSM8K / "test.jsonl").exists():
        pytest.skip("GSM8K data not available")
    code = main(["eval", f"--model={hf_dirs['qwen2']}", "--task=gsm8k", f"--data_path={GSM8K}", "--split=test",
                 "--limit=50", "--n=4", "--max_new_tokens=48", "--dtype=float32", "--device=cpu",
                 f"--runs_dir={tmp_path}", "--name=g"])
    assert code == 0
    rows = [json.loads(r) for r in (tmp_path / "g" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and all(len(r["completions"]) == 4 for r in rows)
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["task"] == "gsm8k" and {"pass@1", "pass@4", "maj@4"} <= set(summary["metrics"])
    assert (tmp_path / "g" / "accuracy_vs_k.png").exists()


def test_cli_eval_math_and_sample_with_a_local_hf_model(hf_dirs, tmp_path, capsys):
    pytest.importorskip("math_verify")
    data = tmp_path / "math.jsonl"
    data.write_text("\n".join(json.dumps({"problem": f"What is ${i}+{i}$?", "solution": f"$\\boxed{{{2 * i}}}$"})
                              for i in range(3)) + "\n")
    code = main(["eval", f"--model={hf_dirs['llama']}", "--task=math", f"--data_path={data}", "--split=test",
                 "--limit=3", "--n=2", "--max_new_tokens=16", "--device=cpu", f"--runs_dir={tmp_path}",
                 "--name=m"])
    assert code == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["task"] == "math" and summary["n"] == 2
    assert main(["sample", f"--model={hf_dirs['qwen2']}", "--prompt=What is 2 + 2?", "--n=2",
                 "--max_new_tokens=8", "--json=true", "--device=cpu"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{\"prompt")]
    assert len(lines) == 2 and all(x["prompt"] == "What is 2 + 2?" for x in lines)


def test_doctests_and_one_line_error_for_a_missing_local_model(tmp_path, capsys):
    import doctest

    import reasonlab.models.hf as hf_module
    import reasonlab.train.distributed as dist_module

    assert doctest.testmod(hf_module).failed == 0 and doctest.testmod(dist_module).failed == 0
    assert main(["eval", f"--model={tmp_path}/runs/missing/model", "--task=gsm8k"]) == 2
    err = capsys.readouterr().err
    assert "no model directory at" in err and err.count("\n") == 1
