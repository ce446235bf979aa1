"""Answer normalisation and the soft VQA accuracy, as the official VQA tools compute them.

Two normalisers exist and both matter:
- `evalai_normalize`: EvalAI's answer processor (m4c_evaluator), used by LLaVA to build the VQAv2
  submission file and by the TextVQA scorer, on the prediction and on every ground-truth answer.
- `vqa_eval_accuracy`: the official VQA evaluation (GT-Vision-Lab vqaEval) as it is today (since its
  2021 "Fixed processing answers bug" commit, which EvalAI and recent papers use): when the 10 answers
  differ, the prediction and every answer get the punctuation rule then the digit/article rule; when
  they are all identical nothing is normalised and the raw texts are compared.

Quirks kept on purpose (they change numbers):
- the period rule removes "." not followed by a digit, at most 32 times per answer (the official code
  passes re.UNICODE, whose value is 32, in the `count` position);
- number words map only for none/zero..ten; articles a/an/the are dropped; contractions use the
  official table, whose capitalised keys ("Im", "Ive") never match the lower-cased words.
"""

from __future__ import annotations

import re

# Punctuation marks handled by process_punctuation (":", "'", "$", "%", "#", "&", "*" are not among them).
PUNCTUATION: tuple[str, ...] = tuple(';/[]"{}()=+\\_-><@`,?!')
NUMBER_WORDS: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# The official contraction table (key -> value), kept as data. Note "somebody'd" -> "somebodyd".
_CONTRACTION_PAIRS = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't mightnt've=mightn't've
mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't notve=not've
oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't
shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't
shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've
somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd
someoned've=someone'd've someone'dve=someone'd've someonell=someone'll someones=someone's
somethingd=something'd somethingd've=something'd've something'dve=something'd've
somethingll=something'll thats=that's thered=there'd thered've=there'd've there'dve=there'd've
therere=there're theres=there's theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll
theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've
werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's whered=where'd
wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS: dict[str, str] = dict(pair.split("=", 1) for pair in _CONTRACTION_PAIRS.split())

# "(?!<=\d)" in the official pattern is a no-op lookahead, so the rule is: a period not followed by a digit.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_MAX_REMOVALS = 32  # re.UNICODE == 32, passed as `count` by the official code
_COMMA_BETWEEN_DIGITS_VQA = re.compile(r"(\d)(,)(\d)")
_COMMA_BETWEEN_DIGITS_EVALAI = re.compile(r"(?<=\d)(,)+(?=\d)")


def process_punctuation(text: str, comma_rule: re.Pattern[str] = _COMMA_BETWEEN_DIGITS_VQA) -> str:
    """Delete a mark when it touches a space (or the text has a digit,digit comma), else make it a space."""
    out = text
    delete_all = comma_rule.search(text) is not None
    for mark in PUNCTUATION:
        if delete_all or (mark + " " in text or " " + mark in text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_REMOVALS)


def process_digit_article(text: str) -> str:
    """Lower-case, map number words, drop articles, expand contractions, re-join with single spaces."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def evalai_normalize(answer: str) -> str:
    """EvalAI's answer processor: what the VQAv2 submission file holds and what TextVQA compares."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    text = process_punctuation(text, _COMMA_BETWEEN_DIGITS_EVALAI)
    return process_digit_article(text)


def leave_one_out_accuracy(prediction: str, gt_answers: list[str]) -> float:
    """Mean over the answers (by position) of min(1, #other answers equal to the prediction / 3)."""
    accs: list[float] = []
    for i in range(len(gt_answers)):
        matches = sum(1 for j, gt in enumerate(gt_answers) if j != i and gt == prediction)
        accs.append(min(1, float(matches) / 3))
    return float(sum(accs)) / len(accs)


def _strip_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_eval_accuracy(prediction: str, gt_answers: list[str]) -> float:
    """One question's accuracy as the official vqaEval computes it today (0, 0.3, 0.6, 0.9 or 1.0 for 10 answers).

    Newlines and tabs become spaces and both sides are stripped. Only when the ground-truth answers are
    not all identical do the prediction and every ground-truth answer get `process_punctuation` then
    `process_digit_article`; ten identical answers are compared raw with the raw prediction (so "Yes"
    does not match ten "yes", and "two" matches ten "two").
    """
    pred = _strip_whitespace(prediction)
    gts = [_strip_whitespace(gt) for gt in gt_answers]
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(gt)) for gt in gts]
        pred = process_digit_article(process_punctuation(pred))
    return leave_one_out_accuracy(pred, gts)


def textvqa_accuracy(prediction: str, gt_answers: list[str]) -> float:
    """The m4c TextVQA accuracy: EvalAI processing on both sides, then the leave-one-out soft score."""
    if len(gt_answers) != 10:
        raise ValueError(f"TextVQA scoring needs exactly 10 ground-truth answers, got {len(gt_answers)}")
    gts = [evalai_normalize(gt) for gt in gt_answers]
    return leave_one_out_accuracy(evalai_normalize(prediction), gts)
