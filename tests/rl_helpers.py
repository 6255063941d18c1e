"""Shared pieces of the RL tests: a tiny random policy and random groups of completions."""
import torch

from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.train.rollout import Group, Row


def tiny_model(seed=0, n_heads=2, n_kv_heads=2):
    tok = CharTokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=n_heads, n_kv_heads=n_kv_heads,
                      d_ff=64, max_seq_len=256)
    return Llama(cfg), tok


def random_groups(p=2, g=4, seed=0, prompt_len=(3, 8), length=(2, 9)):
    """``p`` groups of ``g`` finished rows with random ids and sampler log-probs, and (p, g)
    random advantages. Lengths are drawn from ``[lo, hi)``."""
    gen = torch.Generator().manual_seed(seed)
    groups = []
    for i in range(p):
        prompt = torch.randint(3, 140, (int(torch.randint(*prompt_len, (1,), generator=gen)),), generator=gen).tolist()
        rows = []
        for _ in range(g):
            n = int(torch.randint(*length, (1,), generator=gen))
            ids = torch.randint(3, 140, (n,), generator=gen).tolist()
            rows.append(Row(ids=ids, logprobs=(-torch.rand(n, generator=gen)).tolist(), finish="eos"))
        groups.append(Group(i, prompt, rows))
    return groups, torch.randn(p, g, generator=gen)
