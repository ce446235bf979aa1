"""The chat-completions request (OpenAI's schema, the parts this server implements) and its translation into a
conversation of the checkpoint's chat template: `{"from": "human"|"gpt", "value": ...}` turns, `<image>` opening
the turn that carried the image, as `tinyllava predict`/`chat` write it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tinyllava.constants import IMAGE_PLACEHOLDER
from tinyllava.serving.errors import ApiError


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)  # what torch.Generator.manual_seed takes
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1)
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


def parse_request(payload: Any) -> ChatRequest:
    """The validated request, or ApiError(400) naming the first offending field."""
    if not isinstance(payload, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_request_body")
    try:
        request = ChatRequest.model_validate(payload)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    if (request.n or 1) != 1:
        raise ApiError(400, f"n={request.n}: this server returns one choice per request; send n=1 (or several "
                            f"requests, which are batched together)", param="n", code="unsupported_value")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name) not in (None, 0, 0.0):
            raise ApiError(400, f"{name} is not supported by this server; leave it out or send 0",
                           param=name, code="unsupported_value")
    if request.logprobs:
        raise ApiError(400, "logprobs are not supported by this server; leave it out or send false",
                       param="logprobs", code="unsupported_value")
    if isinstance(request.stop, list) and len(request.stop) > 4:
        raise ApiError(400, f"stop has {len(request.stop)} strings; send at most 4", param="stop")
    return request


def _validation_error(exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False)
    first = max(errors, key=lambda e: len(e.get("loc", ())))  # the deepest: the branch the input was meant for
    param = _param(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param=param,
                        code="unknown_parameter")
    if kind == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'", param=param, code="missing_required_parameter")
    got = type(first.get("input")).__name__
    return ApiError(400, f"Invalid value for '{param}': {first.get('msg', 'invalid')} (got {got})", param=param,
                    code="invalid_value")


def _param(loc: tuple) -> str | None:
    """'messages.0.content.0.image_url.url' from pydantic's location, without the union branch names it adds."""
    parts: list[str] = []
    for item in map(str, loc):
        if "[" in item or item in {"str", "int", "float", "bool", "none"}:
            continue
        if parts and parts[-1] == item:  # a tagged union's tag followed by the field of the same name
            continue
        parts.append(item)
    return ".".join(parts) or None


@dataclass
class Conversation:
    turns: list[dict[str, str]]
    image_url: str | None          # the one image's data URL, decoded later (off the event loop)
    image_param: str | None        # where it was, for error messages


def to_conversation(messages: list[Message], max_images: int) -> Conversation:
    """Turns for the checkpoint's template: consecutive messages of one role are joined; the conversation must
    start and end with the user. ApiError(400) for what the template cannot take."""
    turns: list[dict[str, str]] = []
    image_url = image_param = None
    images = 0
    for i, message in enumerate(messages):
        if message.role in ("system", "developer"):
            raise ApiError(400, f"messages[{i}]: {message.role} messages are not supported: this checkpoint's chat "
                                f"template has its own fixed system prompt; send user and assistant messages only",
                           param=f"messages.{i}.role", code="unsupported_value")
        texts: list[str] = []
        has_image = False
        content = message.content
        if content is None:
            raise ApiError(400, f"messages[{i}] has no content", param=f"messages.{i}.content")
        parts = [TextPart(type="text", text=content)] if isinstance(content, str) else content
        for j, part in enumerate(parts):
            if isinstance(part, TextPart):
                if IMAGE_PLACEHOLDER in part.text:
                    raise ApiError(400, f"messages[{i}]: the text {IMAGE_PLACEHOLDER} is reserved; send the image "
                                        f"as an image_url part", param=f"messages.{i}.content")
                texts.append(part.text)
                continue
            if message.role != "user":
                raise ApiError(400, f"messages[{i}]: only user messages can carry images",
                               param=f"messages.{i}.content.{j}")
            images += 1
            if images > max_images:
                raise ApiError(400, f"too many images: this model takes at most {max_images} image(s) per "
                                    f"conversation; start a new conversation for another image",
                               param=f"messages.{i}.content.{j}", code="too_many_images")
            image_url, image_param, has_image = part.image_url.url, f"messages.{i}.content.{j}.image_url.url", True
        text = "\n".join(t for t in texts if t)
        if has_image:
            text = f"{IMAGE_PLACEHOLDER}\n{text}"
        speaker = "human" if message.role == "user" else "gpt"
        if turns and turns[-1]["from"] == speaker:
            turns[-1]["value"] = f"{turns[-1]['value']}\n{text}"
        else:
            turns.append({"from": speaker, "value": text})
    if not turns or turns[0]["from"] != "human":
        raise ApiError(400, "the conversation must start with a user message", param="messages")
    if turns[-1]["from"] != "human":
        raise ApiError(400, "the last message must be from the user (the assistant answers it)", param="messages")
    return Conversation(turns, image_url, image_param)
