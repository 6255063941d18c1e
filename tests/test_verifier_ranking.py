"""Within-problem ranking for value models: grouped batches, the Bradley-Terry loss, validation metrics."""
import math

import pytest
import torch

from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.verifiers.validate import (
    auroc,
    best_of_group,
    step_probabilities,
    validation_report,
    within_group_auroc,
)
from reasonlab.verifiers.value_model import (
    ValueTrainConfig,
    batches,
    make_value_model,
    pairwise_loss,
    train_value_model,
)

TOK = CharTokenizer()


def test_grouped_batches_keep_groups_whole_and_cover_every_row_once():
    groups = [i // 3 for i in range(20)]                 # groups of 3 (the last of 2)
    out = batches(len(groups), groups, 7, torch.Generator().manual_seed(1))
    assert sorted(i for b in out for i in b) == list(range(20))
    for b in out:
        assert len(b) <= 7
        assert all(groups.count(g) == sum(groups[i] == g for i in b) for g in {groups[i] for i in b})
    plain = batches(10, None, 4, torch.Generator().manual_seed(1))
    assert [len(b) for b in plain] == [4, 4, 2] and sorted(i for b in plain for i in b) == list(range(10))


def test_pairwise_loss_compares_only_within_a_group_and_weights_by_the_label_gap():
    s = torch.tensor([1.0, 0.0, 5.0])
    t = torch.tensor([1.0, 0.0, 0.0])
    one = pairwise_loss(s, t, torch.tensor([0, 0, 1]))          # only (0, 1) is a pair
    assert math.isclose(one.item(), math.log1p(math.exp(-1.0)), rel_tol=1e-6)
    both = pairwise_loss(s, t, torch.tensor([0, 0, 0]))         # (0, 1) and (0, 2)
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(4.0))) / 2
    assert math.isclose(both.item(), expected, rel_tol=1e-6)
    soft = pairwise_loss(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([0.9, 0.5, 0.0]), torch.zeros(3))
    assert math.isclose(soft.item(), math.log(2), rel_tol=1e-6)   # equal scores: log 2 whatever the weights
    assert pairwise_loss(s, torch.ones(3), torch.zeros(3)).item() == 0.0


def test_ranking_metrics():
    assert auroc([0.2, 0.2], [True, False]) == 0.5
    scores, labels, groups = [0.9, 0.1, 0.3, 0.4, 0.5], [True, False, False, True, True], [0, 0, 1, 1, 2]
    assert within_group_auroc(scores, labels, groups) == (1.0, 2)
    assert best_of_group(scores, labels, groups) == 1.0
    assert best_of_group([0.1, 0.9], [True, False], [0, 0]) == 0.0


def tiny_policy():
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=TOK.vocab_size, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=64,
                             max_seq_len=128))


def test_pairwise_training_learns_the_within_problem_difference():
    # Each "problem" has a prompt whose first character sets how likely its solutions are right
    # (what BCE mostly learns); within a problem only the answer character separates right from
    # wrong. With the ranking loss the head must rank the right solution first in every problem.
    rows, groups, prompts, sols, correct = [], [], [], [], []
    for p in range(24):
        prompt = TOK.encode(("a" if p % 2 else "b") + str(p % 10) + ":")
        prompts.append(prompt)
        for ok in (True, False):
            comp = TOK.encode("x\n" if ok else "y\n")
            rows.append((prompt + comp, [None] * len(prompt) + [None, float(ok)]))
            groups.append(p)
            sols.append((p, comp))
            correct.append(ok)
    model = make_value_model(tiny_policy())
    losses = train_value_model(model, rows, ValueTrainConfig(epochs=8, batch_size=8, lr=3e-3, pairwise=1.0),
                               groups=groups)
    assert losses[-1] < 0.5 * losses[0]
    report = validation_report(model, prompts, sols, correct, TOK.encode("\n")[0], TOK.pad_id)
    assert report["last"]["within_auroc"] == 1.0 and report["last"]["best_of_n"] == 1.0
    ids = torch.tensor([prompts[0] + sols[0][1]])
    full = torch.sigmoid(model(ids)[0, :, 0])
    assert torch.allclose(torch.tensor(step_probabilities(model, prompts, sols[:1], TOK.encode("\n")[0], 0)[0]),
                          full[-1:], atol=1e-6)


@torch.no_grad()
def test_lm_feature_scorer_is_incremental_forks_and_equals_a_full_forward(tmp_path):
    from reasonlab.engine.tiny import LlamaRunner
    from reasonlab.tasks import get_task
    from reasonlab.verifiers.scorers import ValueScorer
    from reasonlab.verifiers.value_model import (
        load_value_model,
        lp_features,
        lp_weight,
        save_value_model,
        value_logits,
    )

    policy = tiny_policy()
    model = make_value_model(policy, lm_features=True)
    torch.nn.init.normal_(model.lm_head.weight[:1], std=0.5)
    model.lp_head.weight.copy_(torch.tensor([[0.7, 0.3]]))
    save_value_model(tmp_path / "v", model, TOK)
    model, _, meta = load_value_model(tmp_path / "v")
    assert meta["lm_features"] and meta["outputs"] == 1
    task = get_task("arith")
    exs = task.generate(2, seed=3, split="train", steps=(2, 3), max_operand=9, max_value=50)
    prompts = [TOK.encode(task.format_prompt(e)) for e in exs]
    scorer = ValueScorer(LlamaRunner(model), TOK.pad_id, lp_weight=lp_weight(model))
    chunks = [TOK.encode("c = a + b\n"), TOK.encode("c = 1\n"), TOK.encode("d"), []]
    state = scorer.start(exs, prompts, 2, 64)
    first = scorer.extend(state, chunks)
    state = scorer.select(state, torch.tensor([0, 0, 3]))            # fork row 0, keep row 3
    state = scorer.concat([state, scorer.select(state, torch.tensor([2]))])
    more = [TOK.encode("d = 2\n"), TOK.encode("e"), TOK.encode("zz"), TOK.encode("q")]
    second = scorer.extend(state, more)
    heads = [(prompts[0], chunks[0] + more[0]), (prompts[0], chunks[0] + more[1]), (prompts[1], more[2]),
             (prompts[1], more[3]), (prompts[0], chunks[0])]
    for (prompt, comp), got in zip(heads, [*second, first[0]]):
        ids = torch.tensor([prompt + comp])
        full = torch.sigmoid(value_logits(model, ids, [len(prompt)])[0, -len(got):, 0])
        assert torch.allclose(torch.tensor(got), full, atol=1e-4)
    # the features: log-probs of the completion tokens under the policy's own LM head
    ids = torch.tensor([prompts[0] + chunks[0]])
    feats = lp_features(model(ids), ids, [len(prompts[0])], 1)[0]
    logp = torch.log_softmax(policy(ids)[0], -1)
    lps = [float(logp[len(prompts[0]) + j - 1, t]) for j, t in enumerate(chunks[0])]
    assert feats[-1, 0].item() == pytest.approx(sum(lps) / len(lps), abs=1e-4)
    assert feats[-1, 1].item() == pytest.approx(min(lps), abs=1e-4)
    assert feats[: len(prompts[0])].abs().sum() == 0
    one_shot = ValueScorer(LlamaRunner(model), TOK.pad_id, lp_weight=lp_weight(model))
    got = one_shot.score(exs, prompts, 2, chunks)
    assert all(torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-5) for x, y in zip(got, first))
