"""The MM-Vet GPT-judge protocol over any OpenAI-compatible chat-completions endpoint (standard library only).

Protocol (official mm-vet_evaluator.py): one user message = the few-shot grading prompt + "\\n" +
"question | ground truth | prediction | " (with " <AND> " / " <OR> " spaced out in the ground truth),
max_tokens=3, temperature 0. The reply's first space-separated token must parse as a float in [0, 1].
If not, the judge is asked again with "\\nPredict the correctness of the answer (digit): " appended, first
at temperature 0 then 0.5 higher each time; after the 5th failed reply the score is 0.0 (the 6th reply
is kept but never read). Rate limits (HTTP 429) wait and regrade the sample, as the official script does.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

# The few-shot grading prompt of the official MM-Vet evaluator (github.com/yuweihao/MM-Vet,
# mm-vet_evaluator.py), reproduced verbatim: the judge protocol, and so the scores, depend on every character.
JUDGE_PROMPT = """Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0
"""  # noqa: E501
RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): "
MAX_TOKENS = 3
MAX_TRIES = 5
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class JudgeError(RuntimeError):
    """The judge endpoint failed in a way the protocol does not retry (bad URL, auth, malformed reply)."""


def grading_message(question: str, ground_truth: str, prediction: str) -> str:
    """The user message for one sample (without the retry suffix)."""
    gt = ground_truth.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return JUDGE_PROMPT + "\n" + " | ".join([question, gt, prediction, ""])


def parse_score(content: Any) -> float | None:
    """The score in a judge reply, or None: first space-separated token, stripped, a float in [0, 1].
    (A NaN token is rejected here; the official range check would let it through.)"""
    if not isinstance(content, str):
        return None
    try:
        score = float(content.split(" ")[0].strip())
    except ValueError:
        return None
    return score if 0.0 <= score <= 1.0 else None


@dataclass
class Grade:
    score: float
    content: str
    model: str
    queries: int


@dataclass
class ChatJudge:
    """Posts chat-completion requests to `url` (…/v1 or …/v1/chat/completions)."""

    url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    rate_limit_wait_s: float = 30.0
    max_rate_limit_waits: int = 10
    sleep: Any = field(default=time.sleep, repr=False)

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    def complete(self, message: str, temperature: float) -> tuple[str | None, str]:
        """One request; returns (reply content, model name the server reports)."""
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": message}],
                "max_tokens": MAX_TOKENS,
                "temperature": temperature,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            payload = json.loads(response.read().decode("utf-8"))
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"unexpected reply from {self.endpoint}: {str(payload)[:200]}") from exc
        return content, str(payload.get("model", self.model))

    def _grade_once(self, message: str) -> Grade:
        temperature = 0.0
        content, model = self.complete(message, temperature)
        queries, tries = 1, 1
        while True:
            score = parse_score(content)
            if score is not None:
                return Grade(score, str(content).split(" ")[0].strip(), model, queries)
            content, model = self.complete(message + RETRY_SUFFIX, temperature)
            queries += 1
            tries += 1
            temperature += 0.5
            if tries > MAX_TRIES:
                return Grade(0.0, str(content), model, queries)

    def grade(self, question: str, ground_truth: str, prediction: str) -> Grade:
        """Grade one sample; rate limits and server errors wait and start the sample over."""
        message = grading_message(question, ground_truth, prediction)
        waits = 0
        while True:
            try:
                return self._grade_once(message)
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRYABLE_STATUS or waits >= self.max_rate_limit_waits:
                    raise JudgeError(f"judge {self.endpoint} answered HTTP {exc.code}: {exc.reason}") from exc
            except urllib.error.URLError as exc:
                raise JudgeError(f"cannot reach judge {self.endpoint}: {exc.reason}") from exc
            waits += 1
            self.sleep(self.rate_limit_wait_s)
