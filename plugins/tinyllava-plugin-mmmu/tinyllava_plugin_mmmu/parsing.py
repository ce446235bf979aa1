"""MMMU's answer parsing and per-question evaluation, as the official eval utilities define them.

The one change: where the official multiple-choice parser falls back to `random.choice`, the choice here
comes from a `random.Random` seeded per question (see `question_seed`), so a run is reproducible and the
letter written to the answers file is the letter scored.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

_STRIP_CHARS = (",", ".", "!", "?", ";", ":", "'")
_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL = (":", ",", ".", "!", "?", ";", ":", "'")
_SPLIT = re.compile(r"\.\s(?=[A-Z])|\n")
_NUM_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUM_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUM_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")


def question_seed(question_id: str, seed: int = 42) -> int:
    """The fallback seed of one question: the first 8 bytes (big-endian) of sha256("<seed>:<question id>").
    Independent of question order, process and PYTHONHASHSEED."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{question_id}".encode()).digest()[:8], "big")


def parse_multi_choice(
    response: str, all_choices: list[str], index2ans: dict[str, str], rng: random.Random
) -> str:
    """The option letter of a free-text answer: "(X)", then " X ", then (for answers over 5 words) the
    option text; with several candidates the one mentioned last wins; with none, a seeded random letter."""
    for char in _STRIP_CHARS:
        response = response.strip(char)
    response = f" {response} "
    candidates: list[str] = []
    bracketed = False
    by_content = False
    for choice in all_choices:
        if f"({choice})" in response:
            candidates.append(choice)
            bracketed = True
    if not candidates:
        candidates = [choice for choice in all_choices if f" {choice} " in response]
    if not candidates and len(response.split()) > 5:
        lowered = response.lower()
        candidates = [index for index, ans in index2ans.items() if str(ans).lower() in lowered]
        by_content = bool(candidates)
    if not candidates:
        return rng.choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    if by_content:
        positions = [response.lower().rfind(str(index2ans[c]).lower()) for c in candidates]
    elif bracketed:
        positions = [response.rfind(f"({c})") for c in candidates]
    else:
        positions = [response.rfind(f" {c} ") for c in candidates]
    return candidates[positions.index(max(positions))]


def extract_numbers(text: str) -> list[str]:
    """Comma-grouped, scientific and plain numbers, in that order (so "1,000" also yields "000")."""
    return _NUM_COMMAS.findall(text) + _NUM_SCIENTIFIC.findall(text) + _NUM_SIMPLE.findall(text)


def normalize_str(text: str) -> list[Any]:
    """A number becomes round(float, 2); other text is lower-cased, and one character c becomes " c", "c "."""
    text = text.strip()
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        lowered = text.lower()
        return [" " + lowered, lowered + " "] if len(lowered) == 1 else [lowered]
    return [round(value, 2)]


def _key_subresponses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    pieces = _SPLIT.split(response)
    keys: list[str] = []
    for index, piece in enumerate(pieces):
        indicators = [*_INDICATORS, "="] if index == len(pieces) - 1 else list(_INDICATORS)
        shortest: str | None = None
        for indicator in indicators:
            if indicator in piece:
                tail = piece.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            keys.append(shortest)
    return keys or [response]


def parse_open_response(response: str) -> list[Any]:
    """Candidate answers of an open question: key tails after "is", "so", "=", ..., the numbers in them,
    each normalised; duplicates removed (the official code returns an unordered set)."""
    keys = _key_subresponses(response)
    candidates: list[str] = list(keys)
    for key in keys:
        candidates.extend(extract_numbers(key))
    normalized: list[Any] = []
    for cand in candidates:
        normalized.extend(normalize_str(cand))
    return list(dict.fromkeys(normalized))


def eval_multi_choice(gold: str | list[str], pred: str) -> bool:
    return pred in gold if isinstance(gold, list) else gold == pred


def eval_open(gold: str | list[str], preds: list[Any]) -> bool:
    """A text candidate is right if it contains a text gold answer; a number must equal a gold number."""
    golds = (
        [n for g in gold for n in normalize_str(str(g))]
        if isinstance(gold, list)
        else normalize_str(str(gold))
    )
    for pred in preds:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in golds):
                return True
        elif pred in golds:
            return True
    return False
