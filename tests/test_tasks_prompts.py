import pytest

from reasonlab.tasks.prompts import TEMPLATES, check_r1_format, format_prompt


def test_r1_template_exact():
    assert format_prompt("r1", "What is 2+2?") == (
        "A conversation between User and Assistant. The Assistant thinks inside <think> </think>, "
        "then answers inside <answer> </answer>.\nUser: What is 2+2?\nAssistant: <think>")


def test_other_templates():
    assert format_prompt("direct", "Q") == "Question: Q\nAnswer:"
    assert format_prompt("cot", "Q") == "Question: Q\nAnswer: Let's think step by step."
    assert format_prompt("r1_paper", "Q").endswith("User: Q. Assistant:")
    shots = format_prompt("fewshot", "Q", examples=[("A?", "1"), ("B?", "2")])
    assert shots == "Question: A?\nAnswer: 1\n\nQuestion: B?\nAnswer: 2\n\nQuestion: Q\nAnswer:"
    assert set(TEMPLATES) >= {"direct", "cot", "fewshot", "r1", "r1_paper"}


def test_template_errors():
    with pytest.raises(ValueError, match="choose from"):
        format_prompt("nope", "Q")
    with pytest.raises(ValueError, match="examples"):
        format_prompt("fewshot", "Q")


@pytest.mark.parametrize("completion", [
    "c = 1 + 2 = 3\n</think>\n<answer>3</answer>",
    "x</think><answer>3</answer>  \n",
    "</think>\n\n<answer></answer>",
])
def test_r1_format_accepts(completion):
    assert check_r1_format(completion)


@pytest.mark.parametrize("completion", [
    "x\n<answer>3</answer>",                          # no </think>
    "x</think>",                                      # no answer
    "x</think>y<answer>3</answer>",                   # text between think and answer
    "x</think><answer>3</answer> trailing",           # text after answer
    "x</think><answer>3</answer><answer>4</answer>",  # two answers
    "<think>x</think><answer>3</answer>",             # prompt already opened think
    "x</think></think><answer>3</answer>",
    "x</think><answer><answer>3</answer></answer>",
    "x<answer>1</answer></think><answer>3</answer>",
])
def test_r1_format_rejects(completion):
    assert not check_r1_format(completion)


def test_r1_format_without_opened_think():
    assert check_r1_format(" <think>x</think> <answer>1</answer>", prompt_opened_think=False)
    assert not check_r1_format("x</think> <answer>1</answer>", prompt_opened_think=False)
