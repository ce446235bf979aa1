"""The answer normalisers and the soft accuracy, on hand-made answers with hand-worked expectations."""

from __future__ import annotations

import pytest
from tinyllava_plugin_vqa.normalize import (
    evalai_normalize,
    leave_one_out_accuracy,
    process_digit_article,
    process_punctuation,
    textvqa_accuracy,
    vqa_eval_accuracy,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes", "yes"),  # case
        ("Two.", "2"),  # number word + trailing period
        ("The dog", "dog"),  # article dropped
        ("an apple", "apple"),
        ("man's", "man 's"),  # word_tokenize splits 's
        ("(a)", ""),  # brackets become spaces, then the article goes
        ("a/b", "b"),  # "/" not next to a space -> space -> "a b" -> article dropped
        ("left / right", "left right"),  # "/" next to a space -> deleted
        ("12:30", "12:30"),  # ":" is not punctuation for this rule
        ("$5", "$5"),
        ("dont", "don't"),  # contraction table
        ("Im", "im"),  # capitalised key never matches lower-cased input
        ("eleven", "eleven"),  # number words stop at ten
        ("none", "0"),
        ("1,000", "1000"),  # commas are deleted by word_tokenize
        ("what?", "what"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("11.", "11"),
        ("  Red,\n", "red"),
        ("", ""),
        ("Yes, there is a dog", "yes there is dog"),
    ],
)
def test_evalai_normalize(raw: str, expected: str) -> None:
    assert evalai_normalize(raw) == expected


def test_period_rule_removes_at_most_32_periods() -> None:
    # 40 periods, none followed by a digit: the official count=re.UNICODE (32) leaves 8 of them.
    assert process_punctuation("x" + "." * 40) == "x" + "." * 8


def test_vqa_punctuation_comma_between_digits_deletes_every_mark() -> None:
    # "1,000-2" has a digit,digit comma, so every mark (including "-") is deleted instead of spaced.
    assert process_punctuation("1,000-2") == "10002"
    assert process_punctuation("a-b") == "a b"
    assert process_digit_article("The  Two  cats") == "2 cats"


def test_leave_one_out_values_for_k_matches() -> None:
    # 10 answers, k of them equal to the prediction:
    # k=1: 9 subsets hold 1 match (1/3), 1 subset holds 0 -> 9/3/10 = 0.3
    # k=2: 2 subsets hold 1 (1/3), 8 hold 2 (2/3) -> (2/3 + 16/3)/10 = 0.6
    # k=3: 3 subsets hold 2 (2/3), 7 hold 3 (1) -> (2 + 7)/10 = 0.9
    # k=4: every subset holds >= 3 -> 1.0
    for k, expected in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]:
        gts = ["cat"] * k + ["dog"] * (10 - k)
        assert leave_one_out_accuracy("cat", gts) == pytest.approx(expected)


def test_vqa_eval_compares_identical_ground_truth_raw() -> None:
    # Ten identical answers: nothing is normalised (official vqaEval since its 2021 answer-processing fix).
    assert vqa_eval_accuracy("Yes", ["yes"] * 10) == 0.0  # case matters: "Yes" != "yes"
    assert vqa_eval_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_eval_accuracy(" yes\n", ["yes"] * 10) == 1.0  # newlines/tabs -> spaces, then strip
    assert vqa_eval_accuracy("two", ["two"] * 10) == 1.0  # neither side becomes "2"
    assert vqa_eval_accuracy("two", ["2"] * 10) == 0.0
    assert vqa_eval_accuracy("A hat.", ["hat"] * 10) == 0.0
    assert vqa_eval_accuracy("", ["yes"] * 10) == 0.0


def test_vqa_eval_normalises_both_sides_when_answers_differ() -> None:
    # Every ground-truth answer gets punctuation + digit/article processing, like the prediction.
    assert vqa_eval_accuracy("two", ["two"] * 5 + ["three"] * 5) == pytest.approx(1.0)  # "2" vs five "2"
    # "a" -> "" (article), and the ground truth "a" -> "" too: 1 match -> 0.3 ("one" and "1" both become "1")
    assert vqa_eval_accuracy("a", ["a", "one", "1"] + ["dog"] * 7) == pytest.approx(0.3)
    assert vqa_eval_accuracy("1", ["a", "one", "1"] + ["dog"] * 7) == pytest.approx(0.6)
    # "a/b" -> "a b" -> "b"; ground truth "a / b" -> "a  b" -> "b": 3 matches -> 0.9
    assert vqa_eval_accuracy("a/b", ["a / b"] * 3 + ["c"] * 7) == pytest.approx(0.9)
    # "T-shirt" -> "t shirt"; ground truth "t-shirt" -> "t shirt": 3 matches -> 0.9
    assert vqa_eval_accuracy("T-shirt", ["t-shirt"] * 3 + ["shirt"] * 7) == pytest.approx(0.9)
    assert vqa_eval_accuracy("Yes, there is a dog", ["yes"] * 9 + ["no"]) == 0.0


def test_textvqa_accuracy() -> None:
    gts = ["Coca Cola"] * 2 + ["coca-cola"] + ["pepsi"] * 7
    # both spellings normalise to "coca cola" -> k=3 -> 0.9
    assert textvqa_accuracy("COCA-COLA.", gts) == pytest.approx(0.9)
    assert textvqa_accuracy("Pepsi", gts) == 1.0  # k=7
    assert textvqa_accuracy("sprite", gts) == 0.0
    with pytest.raises(ValueError, match="exactly 10"):
        textvqa_accuracy("x", ["x"] * 9)
