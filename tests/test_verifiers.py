"""Verifiers: oracle step labels, Monte-Carlo labels, value-model training, incremental scoring."""
import random

import pytest
import torch

from reasonlab.engine.sampler import SampleBatch, left_pad
from reasonlab.engine.tiny import LlamaRunner, shared_prefix_length
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.tasks import get_task
from reasonlab.verifiers.mc_labels import mc_step_labels, oracle_agreement
from reasonlab.verifiers.oracle import arith_step_labels, reasoning_lines
from reasonlab.verifiers.scorers import (
    OracleArithScorer,
    ValueScorer,
    aggregate,
    step_scores,
)
from reasonlab.verifiers.value_model import (
    ValueTrainConfig,
    load_value_model,
    make_value_model,
    save_value_model,
    train_value_model,
)

TASK = get_task("arith")
TOK = CharTokenizer()


def problems(n=6):
    return TASK.generate(n, seed=3, split="train", steps=(2, 3), max_operand=9, max_value=50)


def test_oracle_labels_match_the_generator_labels():
    for ex in problems(20):
        text, labelled = TASK.trace_with_labels(ex, random.Random(ex["id"]), error_rate=0.4, correction_rate=0.5)
        lines = reasoning_lines(text)
        assert arith_step_labels(ex, lines) == [ok for _, ok in labelled]


def test_oracle_never_crashes_on_garbage():
    ex = problems(1)[0]
    assert arith_step_labels(ex, ["", "zz = = =", "wait, nothing", "q = 1 + 1 = 2"]) == [True, True, True, False]


def scripted_rollouts(problem_of_prompt):
    """A 'policy' that finishes correctly iff the prefix's reasoning lines are all correct."""
    def sample_fn(prompts, cfg):
        comps = []
        for ids in prompts:
            text = TOK.decode(ids)
            ex = problem_of_prompt(text)
            head = text.rsplit("<think>", 1)[1]
            labels = arith_step_labels(ex, reasoning_lines(head))
            answer = ex["answer"] if all(labels[-1:]) else "-999"
            comps += [TOK.encode(f"</think>\n<answer>{answer}</answer>")] * cfg.n
        return SampleBatch([i // cfg.n for i in range(len(comps))], prompts, comps, [[0.0] * len(c) for c in comps],
                           ["eos"] * len(comps))
    return sample_fn


def test_mc_labels_of_a_perfect_policy_agree_with_the_oracle():
    exs = problems(8)
    prompts = [TOK.encode(TASK.format_prompt(e)) for e in exs]
    by_question = {e["question"]: e for e in exs}
    solutions = []
    for i, e in enumerate(exs):
        text, _ = TASK.trace_with_labels(e, random.Random(i), error_rate=0.5)
        solutions.append((i, TOK.encode(text) + [TOK.eos_id]))
    def find(text):
        return next(v for q, v in by_question.items() if q in text)
    labels = mc_step_labels(TASK, TOK, exs, prompts, solutions, scripted_rollouts(find), k=4, max_new_tokens=32)
    for (p, comp), lab in zip(solutions, labels):
        assert len(lab["ends"]) == len(lab["soft"]) == len(lab["hard"]) == len(lab["rollouts"])
        assert lab["hard"][-1] == lab["correct"] == TASK.verify(exs[p], TOK.decode(comp)).correct
        assert all(s in (0.0, 1.0) for s in lab["soft"])
    agree = oracle_agreement(TASK, TOK, exs, solutions, labels, ks=(1, 4))
    assert agree["agreement@4"] == 1.0 and agree["steps"] > 8
    assert agree["confusion"]["oracle_false_mc_true"] == agree["confusion"]["oracle_true_mc_false"] == 0
    # consistency only turns labels good: it never adds "oracle right, MC wrong"
    assert agree["consistent_confusion"]["oracle_true_mc_false"] == 0 and "consistent_agreement@4" in agree


def test_consistent_hard_labels_count_later_successes():
    from reasonlab.verifiers.mc_labels import hard_labels

    rollouts = [[False, False, False], [False, True, False], [False, False, False], [True, True, True]]
    assert hard_labels(rollouts) == [False, True, False, True]
    assert hard_labels(rollouts, k=1) == [False, False, False, True]
    assert hard_labels(rollouts, consistent=True) == [True, True, True, True]
    assert hard_labels(rollouts[:3], consistent=True) == [True, True, False]      # good up to the last success
    assert hard_labels([[False]], consistent=True) == [False] and hard_labels([], consistent=True) == []


def tiny_policy(seed=0):
    torch.manual_seed(seed)
    return Llama(LlamaConfig(vocab_size=TOK.vocab_size, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=64,
                             max_seq_len=256))


def test_value_model_learns_and_round_trips(tmp_path):
    model = make_value_model(tiny_policy())
    rows = []
    for i in range(64):
        good = i % 2 == 0
        ids = TOK.encode("x = 1\n" if good else "y = 2\n")
        rows.append((ids, [None] * (len(ids) - 1) + [float(good)]))
    losses = train_value_model(model, rows, ValueTrainConfig(epochs=6, batch_size=16, lr=3e-3))
    assert losses[-1] < 0.5 * losses[0]
    save_value_model(tmp_path / "v", model, TOK, {"kind": "orm"})
    loaded, tok, meta = load_value_model(tmp_path / "v")
    ids = torch.tensor([rows[0][0], rows[1][0]])
    assert torch.allclose(loaded(ids), model(ids), atol=1e-6) and meta["kind"] == "orm"
    assert tok.encode("x") == TOK.encode("x")


@torch.no_grad()
def test_value_scorer_is_incremental_and_equals_a_full_forward():
    model = make_value_model(tiny_policy(), outputs=1)
    torch.nn.init.normal_(model.lm_head.weight, std=0.5)
    runner = LlamaRunner(model)
    scorer = ValueScorer(runner, TOK.pad_id)
    exs = problems(2)
    prompts = [TOK.encode(TASK.format_prompt(e)) for e in exs]
    chunks = [TOK.encode("c = a + b\n"), TOK.encode("c = 1\n"), TOK.encode("d"), []]
    state = scorer.start(exs, prompts, 2, 64)
    first = scorer.extend(state, chunks[:2] + chunks[2:])
    state = scorer.select(state, torch.tensor([0, 0, 3]))            # fork row 0, keep row 3
    more = [TOK.encode("d = 2\n"), TOK.encode("e"), TOK.encode("zz")]
    second = scorer.extend(state, more)
    paths = [prompts[0] + chunks[0] + more[0], prompts[0] + chunks[0] + more[1], prompts[1] + more[2]]
    for path, got in zip(paths, second):
        full = torch.sigmoid(model(torch.tensor([path]))[0, -len(got):, 0])
        assert torch.allclose(torch.tensor(got), full, atol=1e-4)
    assert first[3] == [] and len(first[0]) == len(chunks[0])
    # the prompts once (their common template once), then every fed token once
    shared = shared_prefix_length(*left_pad(prompts, 0))
    assert runner.tokens_encoded == (sum(len(p) for p in prompts) - shared * (len(prompts) - 1)
                                     + sum(map(len, chunks)) + sum(map(len, more)))


def test_step_scores_and_aggregations():
    toks = TOK.encode("a\nb\nc")
    sep = TOK.encode("\n")[0]
    assert step_scores(toks, [0.1, 0.9, 0.2, 0.8, 0.5], sep) == [0.9, 0.8, 0.5]
    assert aggregate([0.9, 0.8, 0.5], "prod") == pytest.approx(0.36)
    assert aggregate([0.9, 0.8, 0.5], "mean") == pytest.approx(2.2 / 3)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([1.0], "max")


def test_oracle_scorer_scores_prefixes():
    ex = problems(1)[0]
    good, _ = TASK.trace_with_labels(ex, random.Random(0))
    oracle = OracleArithScorer(TASK, TOK)
    state = oracle.start([ex], [[0]], 2, 0)
    bad = good.replace(f"<answer>{ex['answer']}</answer>", "<answer>-999</answer>")
    scores = oracle.extend(state, [TOK.encode(good), TOK.encode(bad)])
    assert scores[0][-1] == 1.0 and scores[1][-1] == 0.0 and oracle.tokens_encoded == 0


def test_left_pad_helper_is_shared():
    ids, valid = left_pad([[5, 6], [7]], 0)
    assert ids.tolist() == [[5, 6], [0, 7]] and valid.sum() == 3


@torch.no_grad()
def test_one_shot_scoring_equals_incremental_scoring():
    model = make_value_model(tiny_policy(1))
    torch.nn.init.normal_(model.lm_head.weight, std=0.5)
    exs = problems(2)
    prompts = [TOK.encode(TASK.format_prompt(e)) for e in exs]
    comps = [TOK.encode(t) for t in ("c = 1\nd = 2\n", "c", "x = 3 + 4 = 7\n</think>", "d")]
    a = ValueScorer(LlamaRunner(model), TOK.pad_id)
    ref = a.extend(a.start(exs, prompts, 2, 32), comps)
    b = ValueScorer(LlamaRunner(model), TOK.pad_id)
    got = b.score(exs, prompts, 2, comps)
    assert all(torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-5) for x, y in zip(got, ref))
    assert b.tokens_encoded == a.tokens_encoded


def test_completer_must_share_the_policy_tokenizer(tmp_path):
    from reasonlab.config import ConfigError
    from reasonlab.models.checkpoint import save_checkpoint
    from reasonlab.verifiers.train import _completer

    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=TOK.vocab_size, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, d_ff=32,
                              max_seq_len=64))
    save_checkpoint(tmp_path / "same", model, TOK)
    assert isinstance(_completer(str(tmp_path / "same"), TOK), Llama)
    chars_only = CharTokenizer(words=())
    with pytest.raises(ConfigError, match="completer: .* different tokenizer"):
        _completer(str(tmp_path / "same"), chars_only)
