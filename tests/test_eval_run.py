"""Evaluation stage: resume after an interruption, and scoring with the task's own verifier."""
import json

import torch

from reasonlab.eval.run import EvalConfig, evaluate, read_finished, score_completions
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.tasks import get_task


def tiny_model():
    torch.manual_seed(0)
    tok = CharTokenizer()
    return Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                             d_ff=64)), tok


def test_read_finished_drops_a_cut_off_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"id": "a", "x": 1}) + "\n" + '{"id": "b", "x"')
    assert list(read_finished(path)) == ["a"]


def test_score_completions_uses_verifier_and_canonical_keys():
    task = get_task("arith")
    ex = task.generate(1, seed=0)[0]
    scored = score_completions(task, ex, [f"<answer>{ex['answer']}</answer>", "no answer", "<answer>1</answer><answer>2</answer>"])
    assert scored["correct"] == [True, False, False]
    assert scored["keys"][0] == task.canonical(ex["answer"]) and scored["keys"][1] is None
    assert scored["reasons"][2] == "multiple_answers"


def test_resume_gives_the_samples_of_an_uninterrupted_run(tmp_path):
    model, tok = tiny_model()
    cfg = EvalConfig(runs_dir=str(tmp_path), name="e", limit=6, n=2, ks=[1, 2], max_new_tokens=6,
                     prompts_per_batch=2, resume=True)
    evaluate(cfg, model=model, tokenizer=tok, progress=False)
    path = tmp_path / "e" / "results.jsonl"
    full = [json.loads(r) for r in path.read_text().splitlines()]
    # a crash after 3 problems (in the middle of the second chunk), the 4th line half-written
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:30])
    evaluate(cfg, model=model, tokenizer=tok, progress=False)
    resumed = read_finished(path)
    assert sorted(resumed) == sorted(r["id"] for r in full)
    for row in full:
        assert resumed[row["id"]]["completions"] == row["completions"]
    assert len({c for r in full for c in r["completions"]}) > 1          # the check is not vacuous
