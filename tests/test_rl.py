"""RL math: advantages, losses, KL and aggregation against hand-computed values and plain loops."""
import math

import pytest
import torch

from reasonlab.train import rl


def test_grpo_advantages_hand_computed():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    a = rl.grpo_advantages(r)
    std = math.sqrt((0.75 ** 2 + 3 * 0.25 ** 2) / 3)        # unbiased std of [1, 0, 0, 0]
    assert a[0].tolist() == pytest.approx([0.75 / (std + 1e-4)] + [-0.25 / (std + 1e-4)] * 3)
    assert a[1].tolist() == [0.0] * 4                        # zero-variance group: no signal


def test_dr_grpo_and_rloo_hand_computed():
    r = torch.tensor([[3.0, 1.0, 2.0]])
    assert rl.dr_grpo_advantages(r).tolist() == [[1.0, -1.0, 0.0]]
    assert rl.rloo_advantages(r).tolist() == [[3 - 1.5, 1 - 2.5, 2 - 2.0]]
    assert rl.rloo_advantages(torch.tensor([[5.0]])).tolist() == [[0.0]]


def _reference_advantages(name, rewards):
    out = []
    for group in rewards.tolist():
        g = len(group)
        mean = sum(group) / g
        if name == "grpo":
            std = math.sqrt(sum((x - mean) ** 2 for x in group) / (g - 1))
            out.append([(x - mean) / (std + 1e-4) for x in group])
        elif name == "dr_grpo":
            out.append([x - mean for x in group])
        else:
            out.append([x - (sum(group) - x) / (g - 1) for x in group])
    return torch.tensor(out)


@pytest.mark.parametrize("name", sorted(rl.ADVANTAGES))
def test_vectorised_advantages_equal_reference_loop(name):
    rewards = torch.rand(7, 5, generator=torch.Generator().manual_seed(0)).round(decimals=1)
    assert torch.allclose(rl.ADVANTAGES[name](rewards), _reference_advantages(name, rewards), atol=1e-5)


def test_clip_loss_hand_computed():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))         # ratios 1.5, 0.5, 1.1 (old = 0)
    old = torch.zeros(1, 3)
    loss, clipped = rl.clip_loss(logp, old, torch.tensor([2.0]), 0.2, 0.2)
    assert loss[0].tolist() == pytest.approx([-2.4, -1.0, -2.2])   # min(r A, clip(r) A)
    assert clipped.tolist() == [[True, False, False]]
    loss, clipped = rl.clip_loss(logp, old, torch.tensor([-1.0]), 0.2, 0.28)
    assert loss[0].tolist() == pytest.approx([1.5, 0.8, 1.1])
    assert clipped.tolist() == [[False, True, False]]


def test_clip_loss_gradient_zero_when_clipped():
    logp = torch.log(torch.tensor([[1.5, 1.0]])).requires_grad_()
    loss, _ = rl.clip_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), 0.2, 0.2)
    loss.sum().backward()
    assert logp.grad[0].tolist() == pytest.approx([0.0, -1.0])   # d(-r)/dlogp = -r = -1 at ratio 1


def _reference_clip(logp, old, adv, lo, hi):
    out = torch.zeros_like(logp)
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            r = math.exp(logp[i, t] - old[i, t])
            out[i, t] = -min(r * adv[i], max(1 - lo, min(1 + hi, r)) * adv[i])
    return out


def test_vectorised_clip_loss_equals_reference_loop():
    g = torch.Generator().manual_seed(1)
    logp, old, adv = torch.randn(4, 6, generator=g) * 0.3, torch.randn(4, 6, generator=g) * 0.3, torch.randn(4, generator=g)
    loss, _ = rl.clip_loss(logp, old, adv, 0.2, 0.28)
    assert torch.allclose(loss, _reference_clip(logp, old, adv, 0.2, 0.28), atol=1e-6)


def test_reinforce_loss_and_kl_k3():
    logp = torch.log(torch.tensor([[0.5]]))
    loss, clipped = rl.reinforce_loss(logp, torch.log(torch.tensor([[0.25]])), torch.tensor([3.0]), 0.2, 0.2)
    assert loss.item() == pytest.approx(-6.0) and not clipped.any()
    p, q = torch.tensor([0.2, 0.8]), torch.tensor([0.5, 0.5])       # pi and ref on two tokens
    k3 = rl.kl_k3(p.log(), q.log())
    exact = float((p * (p / q).log()).sum())
    assert float((p * k3).sum()) == pytest.approx(exact, rel=1e-5)  # unbiased under pi
    assert (k3 >= 0).all()


def test_aggregation_weights_hand_computed():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert rl.token_weights(mask, 4)[0].tolist() == pytest.approx([1 / 6, 1 / 6, 0, 0])
    assert rl.sequence_weights(mask, 4).flatten().tolist() == pytest.approx([0.25, 0.25, 0, 0] + [0.125] * 4)
    assert rl.constant_weights(mask, 4)[1].tolist() == pytest.approx([1 / 8] * 4)
    for fn in rl.AGGREGATIONS.values():
        assert float(fn(mask, 4).sum()) <= 1.0 + 1e-6


def test_lookup_names_choices():
    with pytest.raises(ValueError, match="choose from: dr_grpo, grpo, rloo"):
        rl.lookup(rl.ADVANTAGES, "ppo", "advantage")


def test_token_logprobs_matches_manual_and_accepts_logits_objects():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 10)
    ids = torch.tensor([[1, 4, 2, 7]])
    lp, ent = rl.token_logprobs(emb, ids, with_entropy=True)
    manual = torch.log_softmax(emb(ids)[:, :-1], -1).gather(2, ids[:, 1:, None])[..., 0]
    assert torch.allclose(lp, manual) and ent.shape == (1, 3) and (ent > 0).all()

    class Wrapped(torch.nn.Module):                          # Hugging Face style output
        def forward(self, x):
            return type("Out", (), {"logits": emb(x)})()
    assert torch.allclose(rl.token_logprobs(Wrapped(), ids), manual)
