"""Character tokenizer with a small word vocabulary, saved as a Hugging Face ``tokenizer.json``.

Text is cut greedily into the longest matching piece from ``words`` (frequent pieces of the
synthetic tasks and prompt templates: ``" = "``, ``"<answer>"``, ``" conversation"`` ...) or
else a single character. Digits and single letters are never merged, so arithmetic stays digit
by digit and every variable is its own token; any text round-trips exactly. Ids: ``<pad>`` 0,
``<eos>`` 1, ``<unk>`` 2, then the words, then ``"\\n"`` and printable ASCII. Characters outside
the vocabulary map to ``<unk>``.

Why words at all: with one token per character the ``r1`` template alone was 130 tokens of
every document, and a tiny model needed far more steps to learn to copy a multi-character
pattern such as ``c = b * 8`` from the question (docs/LOG.md). The word pieces cut documents to
about 40 % of their characters.

The saved directory loads in ``transformers.AutoTokenizer`` (a ``PreTrainedTokenizerFast``
with a WordLevel model and a Split pre-tokenizer whose regex is the same longest-first
alternation) and encodes to the same ids; ``tests/test_models.py`` checks it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

SPECIALS = ("<pad>", "<eos>", "<unk>")
PAD, EOS, UNK = 0, 1, 2
DEFAULT_CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
DEFAULT_WORDS = (
    # prompt templates
    " conversation", " between", " User", " and", " Assistant", "The", " thinks", " inside",
    "then", " answers", "User: ", "Assistant: ", "Question: ", "Answer:", " Let's", " think", " step",
    " by", " the", " answer", " is", "The answer is", "What is ",
    # tags
    "<think>", "</think>", " <think>", " </think>", "<answer>", "</answer>", " <answer>", " </answer>",
    # arith
    " = ", " + ", " - ", " * ", " / ", ", ", ". ", " What is ", "wait, ", " is wrong. ",
    # countdown
    "try ", ", left [", "dead end, back", "give up", "Using the numbers [", "], make ",
    " Use each number once with + - * / and parentheses.",
)


class CharTokenizer:
    """Maps text to ids one character at a time.

    >>> tok = CharTokenizer()
    >>> tok.decode(tok.encode("x = 12"))
    'x = 12'
    >>> tok.encode("a")[0] >= len(SPECIALS)
    True
    """

    def __init__(self, chars: str = DEFAULT_CHARS, words: tuple[str, ...] | list[str] = DEFAULT_WORDS):
        if len(set(chars)) != len(chars):
            raise ValueError("tokenizer characters must be unique")
        words = [w for w in dict.fromkeys(words) if len(w) > 1]
        self.words = words
        self.itos: list[str] = list(SPECIALS) + words + list(chars)
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.itos)}
        self.pattern = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + \
            ("|" if words else "") + "[\\s\\S]"
        self._regex = re.compile(self.pattern)
        self.pad_id, self.eos_id, self.unk_id = PAD, EOS, UNK
        self.eos_token = SPECIALS[EOS]

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        get = self.stoi.get
        return [get(piece, UNK) for piece in self._regex.findall(text)]

    def prompt_ids(self, text: str) -> list[int]:
        """Ids of a model prompt: the plain text (no chat template, no special tokens); the same
        call as ``models.hf.HFTokenizer.prompt_ids``."""
        return self.encode(text)

    def decode(self, ids, skip_special: bool = True) -> str:
        n_special = len(SPECIALS)
        itos = self.itos
        out = []
        for i in ids:
            i = int(i)
            if i < n_special:
                if skip_special:
                    continue
            out.append(itos[i] if 0 <= i < len(itos) else SPECIALS[UNK])
        return "".join(out)

    # ---------------------------------------------------------------- persistence
    def hf_tokenizer_json(self) -> dict:
        """The ``tokenizer.json`` document understood by the ``tokenizers`` library."""
        added = [
            {"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, tok in enumerate(SPECIALS)
        ]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": self.pattern},
                              "behavior": "Isolated", "invert": False},
            "post_processor": None,
            "decoder": {"type": "Fuse"},
            "model": {"type": "WordLevel", "vocab": dict(self.stoi), "unk_token": SPECIALS[UNK]},
        }

    def save(self, directory: str | Path) -> None:
        """Write the tokenizer files (checkpoint saving makes the whole directory atomic)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tokenizer.json").write_text(json.dumps(self.hf_tokenizer_json(), indent=1))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "pad_token": SPECIALS[PAD], "eos_token": SPECIALS[EOS], "unk_token": SPECIALS[UNK],
            "model_max_length": 1 << 20, "clean_up_tokenization_spaces": False,
            "reasonlab_chars": "".join(self.itos[len(SPECIALS) + len(self.words):]),
            "reasonlab_words": self.words,
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
        special_map = {"pad_token": SPECIALS[PAD], "eos_token": SPECIALS[EOS], "unk_token": SPECIALS[UNK]}
        (directory / "special_tokens_map.json").write_text(json.dumps(special_map, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> "CharTokenizer":
        path = Path(directory) / "tokenizer_config.json"
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer_config.json in {directory}")
        meta = json.loads(path.read_text())
        if "reasonlab_chars" not in meta:
            raise ValueError(f"{path}: not a reasonlab tokenizer (no 'reasonlab_chars')")
        return cls(meta["reasonlab_chars"], meta.get("reasonlab_words", ()))
