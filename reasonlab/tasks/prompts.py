"""Prompt templates (a name -> template registry) and the R1 output-format checker.

The ``r1`` template is deliberately short because the embedded tiny model is character level.
It ends with ``<think>`` (no newline); the model writes the reasoning, ``</think>`` and one
``<answer>...</answer>`` block.

>>> print(format_prompt("direct", "What is 2 + 2?"))
Question: What is 2 + 2?
Answer:
>>> check_r1_format("2 + 2 = 4\\n</think>\\n<answer>4</answer>")
True
"""
from __future__ import annotations

import re

R1 = (
    "A conversation between User and Assistant. The Assistant thinks inside <think> </think>, "
    "then answers inside <answer> </answer>.\n"
    "User: {question}\n"
    "Assistant: <think>"
)

R1_PAPER = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {question}. Assistant:"
)

TEMPLATES: dict[str, str] = {
    "direct": "Question: {question}\nAnswer:",
    "cot": "Question: {question}\nAnswer: Let's think step by step.",
    "fewshot": "Question: {question}\nAnswer:",
    "r1": R1,
    "r1_paper": R1_PAPER,
}

FEWSHOT_EXAMPLE = "Question: {question}\nAnswer: {solution}\n\n"

_TAG_RE = re.compile(r"</?(?:think|answer)>")


def format_prompt(template: str, question: str,
                  examples: list[tuple[str, str]] | None = None) -> str:
    """Fill ``template`` (a name in :data:`TEMPLATES`) with ``question``.

    ``examples`` are ``(question, worked_solution)`` pairs, shown before the question; required
    (non-empty) for ``fewshot`` and allowed for every template.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose from: "
                         + ", ".join(sorted(TEMPLATES)))
    if template == "fewshot" and not examples:
        raise ValueError("the 'fewshot' template needs examples=[(question, solution), ...]")
    shots = "".join(FEWSHOT_EXAMPLE.format(question=q, solution=s) for q, s in examples or ())
    return shots + TEMPLATES[template].format(question=question)


def check_r1_format(completion: str, prompt_opened_think: bool = True) -> bool:
    """True iff ``completion`` is ``<think>?reasoning</think> <answer>answer</answer>`` exactly.

    With ``prompt_opened_think`` the prompt already ended in ``<think>``, so the completion must
    not open another; otherwise it must start (after whitespace) with ``<think>``. Exactly one
    ``</think>`` and one answer block, no other tags, only whitespace after ``</answer>``.

    >>> check_r1_format("x</think><answer>1</answer><answer>2</answer>")
    False
    """
    text = completion
    if not prompt_opened_think:
        text = text.lstrip()
        if not text.startswith("<think>"):
            return False
        text = text[len("<think>"):]
    tags = [m.group(0) for m in _TAG_RE.finditer(text)]
    if tags != ["</think>", "<answer>", "</answer>"]:
        return False
    _, _, after_think = text.partition("</think>")
    if not after_think.lstrip().startswith("<answer>"):
        return False
    _, _, after_answer = after_think.partition("</answer>")
    return after_answer.strip() == ""
