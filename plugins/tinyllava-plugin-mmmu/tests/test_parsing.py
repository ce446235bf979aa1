"""MMMU's parsers on hand-made answers, including the seeded fallback."""

from __future__ import annotations

import hashlib
import random

import pytest
from tinyllava_plugin_mmmu.parsing import (
    eval_multi_choice,
    eval_open,
    extract_numbers,
    normalize_str,
    parse_multi_choice,
    parse_open_response,
    question_seed,
)

CHOICES = ["A", "B", "C", "D"]
INDEX2ANS = {"A": "increase", "B": "decrease", "C": "nucleus", "D": "ribosome"}


class _NoRandom(random.Random):
    def choice(self, seq: object) -> object:
        raise AssertionError("the random fallback must not be used here")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("(B)", "B"),
        ("B", "B"),
        ("Answer: B", "B"),  # " B " found
        ("The answer is D.", "D"),  # trailing "." stripped, then " D "
        ("(A) or (B)? I choose (B)", "B"),  # two bracketed candidates: the last mentioned
        ("A or B, final: B", "B"),  # " A " and " B ": rfind of " B " is later
        ("It is the nucleus, not the ribosome, that reads it", "D"),  # > 5 words: option text, last one
    ],
)
def test_parse_multi_choice(response: str, expected: str) -> None:
    assert parse_multi_choice(response, CHOICES, INDEX2ANS, _NoRandom(0)) == expected


@pytest.mark.parametrize("response", ["B)", "b", "Answer:D", "C\n", "A. Increase", "ribosome", ""])
def test_unparsable_answers_fall_back_to_the_seeded_choice(response: str) -> None:
    # "B)", "b", "Answer:D", "C\n", "A. Increase" match neither "(X)" nor " X "; "ribosome" has <= 5 words
    seed = question_seed("validation_Biology_7")
    expected = random.Random(seed).choice(CHOICES)
    assert parse_multi_choice(response, CHOICES, INDEX2ANS, random.Random(seed)) == expected


def test_question_seed_rule_and_determinism() -> None:
    digest = hashlib.sha256(b"42:validation_Art_1").digest()
    assert question_seed("validation_Art_1") == int.from_bytes(digest[:8], "big")
    assert question_seed("validation_Art_1", seed=7) != question_seed("validation_Art_1")
    picks = [
        parse_multi_choice("?", CHOICES, INDEX2ANS, random.Random(question_seed(f"validation_Art_{i}")))
        for i in range(20)
    ]
    again = [
        parse_multi_choice("?", CHOICES, INDEX2ANS, random.Random(question_seed(f"validation_Art_{i}")))
        for i in range(20)
    ]
    assert picks == again and len(set(picks)) > 1 and set(picks) <= set(CHOICES)


def test_extract_numbers_and_normalize() -> None:
    assert extract_numbers("1,000,000") == ["1,000,000", "000"]  # the plain pattern also finds "000"
    # the plain pattern also picks "2" (before ".5e3") and "3" (after "e") out of scientific notation
    assert extract_numbers("x = 2.5e3 and -4") == ["2.5e3", "2", "3", "-4"]
    assert normalize_str(" 3.14159 ") == [3.14]
    assert normalize_str("1,234") == [1234.0]
    assert normalize_str("B") == [" b", "b "]
    assert normalize_str("Paris") == ["paris"]


def test_parse_open_response() -> None:
    assert parse_open_response("The answer is 42.") == [42.0]  # tail after "is " -> "42"
    assert set(parse_open_response("1,000,000")) == {1000000.0, 0.0}
    assert parse_open_response("x = 3.14159") == [3.14]
    assert parse_open_response("Paris is the capital\nso it is Paris") == ["the capital", "paris"]
    assert parse_open_response("Blue") == ["blue"]  # no indicator: the whole answer


def test_eval_open_and_multi_choice() -> None:
    assert eval_open("42", parse_open_response("The answer is 42."))
    assert eval_open("42.001", [42.0])  # gold rounds to 2 decimals
    assert eval_open("Paris", parse_open_response("I think it is Paris, France"))  # substring of the text
    assert not eval_open("Paris", parse_open_response("It is Lyon"))
    assert eval_open("B", parse_open_response("B"))  # " b" in " b"
    assert not eval_open("a", ["a"])  # a 1-char gold needs its padding
    assert eval_open(["1", "one"], [1.0])
    assert not eval_open("7", [7.5])
    assert eval_multi_choice("B", "B") and not eval_multi_choice("B", "C")
    assert eval_multi_choice(["A", "C"], "C")
