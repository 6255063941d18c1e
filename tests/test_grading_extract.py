from reasonlab.grading.extract import (
    answer_blocks,
    answer_is,
    boxed_contents,
    extract_final,
    hash_answer,
    last_boxed,
    last_number,
    scan_tags,
)


def test_scan_tags_pairs_and_flags():
    scan = scan_tags("a<answer>1</answer> b <answer> 2 </answer>")
    assert scan.blocks == ("1", " 2 ") and not scan.malformed and not scan.unclosed
    assert scan_tags("<answer><answer>1</answer></answer>").malformed
    assert scan_tags("</answer>1").malformed
    assert scan_tags("<answer>1").unclosed and not scan_tags("<answer>1").usable
    assert scan_tags("no tags").blocks == ()


def test_boxed_nested_and_last_wins():
    text = r"first \boxed{1} then \boxed{\frac{a}{b^{2}}} and \fbox{7}"
    assert boxed_contents(text) == ["1", r"\frac{a}{b^{2}}", "7"]
    assert last_boxed(text) == "7"
    assert last_boxed(r"\boxed{unclosed") is None
    assert last_boxed(r"\boxed {x}") == "x"
    assert last_boxed("\\boxed{" * 5000) is None


def test_hash_answer_and_answer_is():
    assert hash_answer("work\n#### 1,200\n") == "1,200"
    assert hash_answer("#### 1\n#### 2") == "2"
    assert hash_answer("####   ") is None
    assert answer_is("So the answer is $18. Done.") == "$18"
    assert answer_is("The final answer is: 18 or 19.\nmore") == "18 or 19"
    assert answer_is("nothing") is None


def test_last_number():
    assert last_number("a 1, b 2,300.5 c") == "2,300.5"
    assert last_number("none") is None


def test_last_number_keeps_the_expression_it_ends():
    assert last_number("She makes 9 * 2 = 18 dollars") == "18"
    assert last_number("so the total is 10^10.") == "10^10"
    assert last_number("it is 5-5") == "5-5"
    assert last_number("paid $20 - $2") == "$20 - $2"
    assert last_number("list 1, 2, 3") == "3"
    assert last_number("x = 10²") == "10²"
    assert last_number("(18)") == "(18)"
    assert last_number("step\n5 + 1") == "5 + 1"
    assert len(last_number("1+" * 10_000 + "1")) <= 1_001


def test_answer_blocks_one_rule_for_every_task():
    assert answer_blocks("no tags") is None
    assert answer_blocks("x <answer> 1 </answer>").candidates == ("1",)
    for bad in ("<answer>8", "8</answer>", "<answer>1</answer><answer>",
                "<answer><answer>1</answer></answer>", "<answer>1</answer>" * 17):
        found = answer_blocks(bad)
        assert found.malformed and found.candidates == (), bad


def test_extract_final_priority():
    text = "The answer is 3. \\boxed{2}\n#### 4\n<answer>1</answer>"
    assert extract_final(text).candidates == ("1",)
    assert extract_final(text.replace("<answer>1</answer>", "")).source == "boxed"
    assert extract_final("#### 4\nThe answer is 3.").source == "hash"
    assert extract_final("so 5 then 6").candidates == ("6",)
    assert extract_final("no digits") is None
    assert extract_final("x", sources=("tag",)) is None
    assert extract_final("<answer><answer>1</answer>").malformed
    assert extract_final("so <answer>8").malformed  # unclosed: no fallback to the last number
