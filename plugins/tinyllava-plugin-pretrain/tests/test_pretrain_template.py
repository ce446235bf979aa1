"""The pretrain template through the public plugin path: caption trained, image and question masked."""

from __future__ import annotations

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry


def test_caption_is_trained_and_the_question_dropped():
    from tinyllava.kits.tokenizers import build_byte_tokenizer

    tok = build_byte_tokenizer(["A cat."], 300)
    template = get_registry().create("chat_template", "pretrain", {})
    conv = [{"from": "human", "value": "<image>\nDescribe the picture."}, {"from": "gpt", "value": "A cat."}]
    assert template.render(conv) == "<image>A cat.\n"
    enc = template.encode(conv, tok)
    caption = tok("A cat.\n", add_special_tokens=False)["input_ids"]
    assert enc.input_ids == [tok.bos_token_id, IMAGE_TOKEN_INDEX, *caption]
    assert enc.labels == [IGNORE_INDEX, IGNORE_INDEX, *caption]
    assert template.generation_prompt(conv[:1], tok) == [tok.bos_token_id, IMAGE_TOKEN_INDEX]


from tinyllava.testing.conformance import ChatTemplateConformance  # noqa: E402


class TestPretrainConformance(ChatTemplateConformance):
    name = "pretrain"
    conversation = [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "A cat."}]

    def make_tokenizer(self):
        from tinyllava.kits.tokenizers import build_byte_tokenizer

        return build_byte_tokenizer(["A cat."], 300)
