"""Supervised fine-tuning: packing keeps documents apart, the loss sees completions only, resume
equals an uninterrupted run, bad rows are named by file:line, chat messages, the CLI."""
import copy
import json

import pytest
import torch

from reasonlab.cli import main
from reasonlab.config import load_config
from reasonlab.io import DataError
from reasonlab.models.checkpoint import load_checkpoint, save_checkpoint
from reasonlab.tasks import get_task
from reasonlab.train.sft import SFTConfig, accumulate_loss, pack_rows, row_tensors, sft, sft_step
from reasonlab.train.sft_data import load_documents, messages_prompt_ids, task_sft_rows
from rl_helpers import tiny_model

EASY = {"steps": [1, 2], "max_operand": 9, "max_value": 50}


def random_docs(n=7, seed=0):
    """Documents of random ids with prompts of 2..9 and completions of 1..12 tokens."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=gen))   # noqa: E731
    return [(torch.randint(3, 140, (rand(2, 10),), generator=gen).tolist(),
             torch.randint(3, 140, (rand(1, 13),), generator=gen).tolist()) for _ in range(n)]


def loss_and_grads(model, docs, **kw):
    model.zero_grad(set_to_none=True)
    loss = accumulate_loss(model, docs, autocast="none", **kw)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("kv_heads,recompute", [(2, False), (1, True)])
def test_packed_rows_equal_one_document_per_row(kv_heads, recompute):
    model, _ = tiny_model(n_kv_heads=kv_heads)
    model.grad_checkpointing = recompute
    docs = random_docs()
    assert len(pack_rows(docs, 40)) == 3                              # it really packs (7 documents)
    ref_loss, ref_grads = loss_and_grads(model, docs, packing=False)
    for micro in (0, 50):                                             # and split into micro-batches
        loss, grads = loss_and_grads(model, docs, seq_len=40, packing=True, micro_tokens=micro)
        assert loss == pytest.approx(ref_loss, abs=1e-5)
        for name, g in grads.items():
            torch.testing.assert_close(g, ref_grads[name], atol=1e-5, rtol=1e-5)


def test_one_document_with_positions_equals_the_default_forward():
    model, _ = tiny_model()
    ids = torch.randint(3, 140, (2, 17))
    plain = model(ids)
    masked = model(ids, positions=torch.arange(17).expand(2, -1), doc_ids=torch.zeros(2, 17, dtype=torch.long))
    torch.testing.assert_close(masked, plain, atol=1e-6, rtol=1e-6)


def test_documents_attend_to_themselves_as_under_the_block_diagonal_mask(monkeypatch):
    from reasonlab.models import llama

    model, _ = tiny_model(n_kv_heads=1)
    doc_ids = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1], [0, 0, 0, 0, 0, 1, 1, 1]])
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 0], [0, 1, 2, 3, 4, 0, 1, 2]])
    ids = torch.randint(3, 140, (2, 8))
    gathered = model(ids, positions=positions, doc_ids=doc_ids)
    monkeypatch.setattr(llama, "document_layout", lambda d: None)          # the mask path
    masked = model(ids, positions=positions, doc_ids=doc_ids)
    real = doc_ids >= 0                                                     # padding is never read
    torch.testing.assert_close(gathered[real], masked[real], atol=1e-5, rtol=1e-5)
    monkeypatch.undo()
    assert llama.document_layout(torch.tensor([[0, 0, 1, 0]])) is None       # split document: the mask


class Bigram(torch.nn.Module):
    """Logits at position t depend on token t only: a token's change reaches only the loss term
    whose target it is and the term it predicts from."""

    def __init__(self, vocab=150):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, ids):
        return self.table(ids)


def test_loss_sees_completion_tokens_only():
    model = Bigram()
    prompt, completion = [5, 6, 7, 8], [9, 10, 11]
    loss = lambda p, c: accumulate_loss(model, [(p, c)])                 # noqa: E731
    base = loss(prompt, completion)
    assert loss([50, 51, 7, 8], completion) == base                     # targets inside the prompt: no loss
    assert loss(prompt, [9, 60, 11]) != base                            # a completion target: loss
    ids = row_tensors([[(prompt, completion)]])["mask"]
    assert ids.tolist() == [[0, 0, 0, 1, 1, 1]]                         # next token is 9, 10, 11


def test_packed_loss_is_the_mean_completion_nll_per_document():
    model, _ = tiny_model()
    docs = random_docs(5, seed=1)
    total, n = 0.0, 0
    with torch.no_grad():
        for p, c in docs:
            logp = torch.log_softmax(model(torch.tensor([p + c]))[0, :-1].float(), -1)
            total -= sum(float(logp[len(p) - 1 + i, t]) for i, t in enumerate(c))
            n += len(c)
    assert accumulate_loss(model, docs, seq_len=64, packing=True) == pytest.approx(total / n, abs=1e-5)


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def tiny_ckpt(tmp_path):
    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    return tmp_path / "m"


def stage_cfg(tmp_path, model, data, *extra):
    return load_config(SFTConfig, None, [f"--model={model}", f"--runs_dir={tmp_path}", f"--data.path={data}",
                                         "--seq_len=256", "--final_eval=false", *extra])


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, tiny_ckpt, monkeypatch, lora_rank):
    data = write_rows(tmp_path / "d.jsonl", task_sft_rows(get_task("arith"), 12, 0, "r1", EASY))
    args = ("--batch_size=4", "--epochs=2", "--ckpt_every=2", "--warmup_steps=2", "--lr=0.003",
            f"--lora_rank={lora_rank}")
    sft(stage_cfg(tmp_path, tiny_ckpt, data, "--name=whole", *args), progress=False)
    import reasonlab.train.sft as stage

    calls = []

    def crash_on_fourth(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return sft_step(*a, **k)
    monkeypatch.setattr(stage, "sft_step", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        sft(stage_cfg(tmp_path, tiny_ckpt, data, "--name=cut", *args), progress=False)
    monkeypatch.setattr(stage, "sft_step", sft_step)
    summary = sft(stage_cfg(tmp_path, tiny_ckpt, data, "--name=cut", "--resume=true", *args), progress=False)
    assert summary["steps"] == 6 and summary["documents"] == 12
    whole, _, _ = load_checkpoint(tmp_path / "whole" / "model")
    cut, _, _ = load_checkpoint(tmp_path / "cut" / "model")
    for (name, a), b in zip(whole.state_dict().items(), cut.state_dict().values()):
        assert torch.equal(a, b), name
    start, _, _ = load_checkpoint(tiny_ckpt)
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), whole.state_dict().values()))
    logs = [[json.loads(x) for x in open(tmp_path / n / "metrics.jsonl")] for n in ("whole", "cut")]
    assert [r["step"] for r in logs[1]] == list(range(1, 7))
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]


BAD_ROWS = [
    {"prompt": "a = 1. What is a?", "completion": "</think>\n<answer>1</answer>"},
    {"prompt": "no completion"},
    {"prompt": "x", "completion": "   "},
    "{not json",
    {"prompt": "long " * 200, "completion": "1"},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]},
    {"messages": [{"role": "user", "content": "b = 2. What is b?"}, {"role": "assistant", "content": "<answer>2</answer>"}]},
]


def test_bad_rows_are_counted_and_named_by_file_and_line(tmp_path, tiny_ckpt, capsys):
    path = write_rows(tmp_path / "bad.jsonl", BAD_ROWS)
    _, tok = tiny_model()
    docs, report = load_documents(path, tok, get_task("arith"), "r1", "correct", 256)
    assert len(docs) == 2 and report.bad == 5 and report.rows == 7
    assert report.bad_examples[0] == f"{path}:2: missing field 'completion'"
    assert [e.split(": ")[0] for e in report.bad_examples] == [f"{path}:{i}" for i in (2, 3, 4, 5, 6)]
    with pytest.raises(DataError, match=f"^{path}:2: missing field 'completion'$"):
        load_documents(path, tok, get_task("arith"), "r1", "correct", 256, bad_rows="error")
    summary = sft(stage_cfg(tmp_path, tiny_ckpt, path, "--max_steps=1"), progress=False)
    assert summary["bad_rows"] == 5 and summary["documents"] == 2 and summary["bad_examples"][0].endswith(
        ":2: missing field 'completion'")
    assert f"{path}:2: missing field" in capsys.readouterr().err
    code = main(["sft", f"--model={tiny_ckpt}", f"--runs_dir={tmp_path}", f"--data.path={path}", "--name=err",
                 "--data.bad_rows=error", "--final_eval=false", "--seq_len=256"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"reasonlab sft: error: {path}:2: missing field 'completion'"
    assert not (tmp_path / "err").exists()                             # stopped before any write


def test_results_rows_keep_verified_completions_under_the_task_prompt(tmp_path):
    task, (_, tok) = get_task("arith"), tiny_model()
    ex = task.generate(1, seed=0, split="test", **EASY)[0]
    good, bad = f"</think>\n<answer>{ex['answer']}</answer>", "</think>\n<answer>-999</answer>"
    row = {"id": ex["id"], "question": ex["question"], "answer": ex["answer"], "completions": [good, bad, good],
           "correct": [True, False, True], "finish_reasons": ["eos", "eos", "length"]}
    path = write_rows(tmp_path / "results.jsonl", [row])
    docs, report = load_documents(path, tok, task, "r1", "correct", 256)
    assert docs == [(tok.prompt_ids(task.format_prompt(ex, "r1")), tok.encode(good) + [tok.eos_id])]
    assert report.filtered == 2                                        # the wrong one and the truncated one
    docs, _ = load_documents(path, tok, task, "r1", "all", 256)
    assert [c for _, c in docs] == [tok.encode(t) + [tok.eos_id] for t in (good, bad)]


def test_task_rows_are_verified_traces():
    task = get_task("arith")
    rows = task_sft_rows(task, 8, 3, "r1", EASY)
    examples = task.generate(8, seed=3, split="train", **EASY)
    assert [r["prompt"] for r in rows] == [task.format_prompt(e, "r1") for e in examples]
    assert all(task.verify(e, r["completion"]).correct for e, r in zip(examples, rows))
    assert rows == task_sft_rows(task, 8, 3, "r1", EASY)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from test_hf import build_tiny_hf                                 # random Qwen2, BPE, Qwen-style chat template

    return build_tiny_hf(tmp_path_factory.mktemp("qwen2"), "qwen2")


def test_messages_through_the_chat_template_train_a_qwen2_model(tmp_path, qwen_dir):
    from reasonlab.models.hf import load_policy
    from reasonlab.train.grpo import load_policy as load_fp32

    model, tok = load_fp32(str(qwen_dir))
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a = 3. What is a?"}]
    prompt = messages_prompt_ids(tok, turns)
    assert tok.decode(prompt, skip_special=False).endswith("a = 3. What is a?<|im_end|>\n<|im_start|>assistant\n")
    rows = [{"messages": turns + [{"role": "assistant", "content": f"<think>a = {i}</think><answer>{i}</answer>"}]}
            for i in range(4)]
    data = write_rows(tmp_path / "chat.jsonl", rows)
    summary = sft(stage_cfg(tmp_path, qwen_dir, data, "--max_steps=1", "--batch_size=4", "--lr=0.01",
                            "--seq_len=128"), progress=False)
    assert summary["steps"] == 1 and summary["documents"] == 4 and summary["packing"]
    tuned, _ = load_fp32(str(tmp_path / "sft" / "model"))
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), tuned.state_dict().values()))
    # The same documents through transformers' Qwen2 (one per row): the same loss, and a step moves it.
    hf, _, kind = load_policy(str(qwen_dir), device="cpu", dtype="float32", impl="transformers")
    docs, _ = load_documents(data, tok, get_task("arith"), "r1", "correct", 128)
    assert kind == "hf"
    ours = accumulate_loss(model, docs, seq_len=128, packing=True)
    before = copy.deepcopy(hf.state_dict())
    hf.train()
    theirs = sft_step(hf, torch.optim.AdamW(hf.parameters(), lr=0.01), docs, 1.0, seq_len=128, packing=True)
    assert theirs == pytest.approx(ours, abs=1e-4)
    assert any(not torch.equal(before[k], v) for k, v in hf.state_dict().items())


def test_cli_help_lists_the_settings(capsys):
    assert main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--data.path=" in out and "--packing=true" in out and "--data.bad_rows=skip" in out
