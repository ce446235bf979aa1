"""Batched, left-padded generation over conversations, using the checkpoint's template and preprocessing."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyllava.constants import IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX


@dataclass
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    cache: str = "auto"  # auto | dynamic | static (see tinyllava.inference.decode)
    share_prefix: bool = True  # run the prompt start all rows share (the system prompt) once, reuse its keys/values


class Pipeline:
    """Wraps a loaded checkpoint. `answer()` takes conversations ending with a human turn."""

    # preprocessed images kept by path (chat re-asks about the same picture every turn)
    PIXEL_CACHE_SIZE = 64

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.template = loaded.template
        self.image_processor = loaded.image_processor
        self.image_seq_len = int(self.model.config.image_seq_len)
        self.image_preprocess = loaded.manifest.get("image_preprocess", "square")
        param = next(self.model.parameters())
        self.device = param.device
        tower_param = next(self.model.vision_tower.parameters(), None)
        self.pixel_dtype = tower_param.dtype if tower_param is not None else param.dtype
        self._pixels: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self._prefix_states: dict = {}
        self._template_prefix: list[int] | None = None

    @classmethod
    def from_checkpoint(cls, path: Path, device: Any = None, dtype: Any = None) -> Pipeline:
        """`device`/`dtype`: torch objects, names, or None for the CPU in the checkpoint's precision."""
        from tinyllava.checkpoint import load_checkpoint

        return cls(load_checkpoint(path, device=device, dtype=dtype))

    def prompt_ids(self, conversation: list[dict[str, str]]) -> list[int]:
        ids = self.template.generation_prompt(conversation, self.tokenizer)
        out: list[int] = []
        for tok in ids:
            if tok == IMAGE_TOKEN_INDEX:
                out.extend([IMAGE_TOKEN_INDEX] * self.image_seq_len)
            else:
                out.append(tok)
        return out

    def pixel_values(self, image: Any) -> Any:
        """(3, H, W) float tensor for one image (path or PIL image), as in training."""
        from tinyllava.data.images import open_image, preprocess_image

        return preprocess_image(open_image(image), self.image_processor, self.image_preprocess)

    def batch_pixel_values(self, images: list[Any]) -> Any:
        """(n, 3, H, W) on the model's device, in the tower's dtype. Files are preprocessed once and cached by
        path, size and modification time. Images not cached are decoded and resized by a pool of threads (PIL
        releases the GIL for both, and nothing else runs meanwhile): on the reference workload at batch 64 that
        was 13% of answering in bfloat16."""
        import torch

        keys = [_file_key(image) for image in images]
        tensors: list[Any] = [self._pixels.get(key) if key is not None else None for key in keys]
        first: dict[Any, int] = {}  # one preprocessing per file, however often the batch names it
        missing = [i for i, tensor in enumerate(tensors)
                   if tensor is None and (keys[i] is None or first.setdefault(keys[i], i) == i)]
        for i, tensor in zip(missing, self._map(self.pixel_values, [images[i] for i in missing]), strict=True):
            tensors[i] = tensor
        for i, key in enumerate(keys):
            if tensors[i] is None:
                tensors[i] = tensors[first[key]]
        for i, key in enumerate(keys):
            if key is None:
                continue
            self._pixels[key] = tensors[i]  # (re)inserted last: the most recently used
            self._pixels.move_to_end(key)
            while len(self._pixels) > self.PIXEL_CACHE_SIZE:
                self._pixels.popitem(last=False)
        return torch.stack(tensors).to(device=self.device, dtype=self.pixel_dtype, non_blocking=True)

    def _map(self, fn: Any, items: list[Any]) -> list[Any]:
        """[fn(x) for x in items], on up to torch's thread count of threads when there are several items."""
        import torch

        workers = min(len(items), torch.get_num_threads())
        if workers < 2:
            return [fn(x) for x in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tinyllava-images") as pool:
            return list(pool.map(fn, items))

    def encode_prompts(self, conversations: list[list[dict[str, str]]], images: list[Any]) -> list[list[int]]:
        """Prompt ids per conversation (image positions expanded); checks the <image> tags against `images`."""
        rows = [self.prompt_ids(c) for c in conversations]
        for conv, ids, image in zip(conversations, rows, images, strict=True):
            has_tag = any(IMAGE_PLACEHOLDER in t.get("value", "") for t in conv)
            if has_tag != (image is not None):
                raise ValueError("a conversation must contain <image> exactly when an image is given")
            if image is not None and IMAGE_TOKEN_INDEX not in ids:
                raise ValueError("the template dropped the <image> tag")
        return rows

    @property
    def template_prefix(self) -> list[int]:
        """The prompt start every conversation shares (BOS, system prompt): what three unlike first questions
        have in common, less its last token (a question's first word may merge with it)."""
        if self._template_prefix is None:
            from tinyllava.inference.decode import common_prefix

            probes = [f"{IMAGE_PLACEHOLDER}\nWhat is this?", "hello", "Zebra 42, (x)"]
            try:
                rows = [self.template.generation_prompt([{"from": "human", "value": v}], self.tokenizer)
                        for v in probes]
            except Exception:  # noqa: BLE001 - a template that refuses the probes: nothing is shared, answer() reports
                rows = [[]]
            self._template_prefix = common_prefix(rows)[:-1]
        return self._template_prefix

    def answer(
        self,
        conversations: list[list[dict[str, str]]],
        images: list[Any],
        settings: GenerationSettings | None = None,
    ) -> list[str]:
        """One answer per conversation; `images[i]` is a path, a PIL image or None."""
        return self.answer_ids(self.encode_prompts(conversations, images), images, settings)

    def ask(self, image: Any, question: str, max_new_tokens: int = 128) -> str:
        """One question about one image (a PIL image, a path, or None): the README's three-line Python API, kept
        stable. Greedy; for batches, several turns or sampling use `answer()`."""
        text = f"{IMAGE_PLACEHOLDER}\n{question}" if image is not None else question
        settings = GenerationSettings(max_new_tokens=max_new_tokens)
        return self.answer([[{"from": "human", "value": text}]], [image], settings)[0]

    def answer_ids(self, rows: list[list[int]], images: list[Any], settings: GenerationSettings | None = None
                   ) -> list[str]:
        """Answers for prompts already encoded by `encode_prompts`, generated together (left-padded)."""
        from tinyllava.training.freed_memory import keep_freed_memory

        with keep_freed_memory():  # the pixels' and the decode's large blocks are reused, not faulted in again
            present = [img for img in images if img is not None]
            pixel_values = self.batch_pixel_values(present) if present else None
            new_ids = self.generate_ids(rows, pixel_values, settings)
        return [text.strip() for text in self.tokenizer.batch_decode(new_ids, skip_special_tokens=True)]

    def generate_ids(self, rows: list[list[int]], pixel_values: Any, settings: GenerationSettings | None = None,
                     on_step: Any = None) -> list[list[int]]:
        """New token ids per row (stop token excluded) for encoded prompts, generated together (left-padded).
        `pixel_values`: (number of images, 3, H, W) on the model's device, one per row with an image, in row
        order (see `batch_pixel_values`), or None. `on_step`: see `tinyllava.inference.decode.decode`."""
        import torch

        from tinyllava.inference.decode import Sampling, decode
        from tinyllava.training.freed_memory import keep_freed_memory

        settings = settings or GenerationSettings()
        longest = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, longest - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, longest - len(r):] = 1
        sampling = Sampling()
        if settings.temperature > 0:
            generator = torch.Generator(device=self.device)
            if settings.seed is not None:
                generator.manual_seed(settings.seed)
            else:
                generator.seed()
            sampling = Sampling(temperature=settings.temperature, top_p=settings.top_p, generator=generator)
        with keep_freed_memory():  # see tinyllava.training.freed_memory: a batch-64 prefill's blocks pass 32 MiB
            new_ids = decode(
                self.model, input_ids.to(self.device), mask.to(self.device), pixel_values,
                max_new_tokens=settings.max_new_tokens, stop_ids=self.template.stop_token_ids(self.tokenizer),
                pad_id=pad, sampling=sampling, cache=settings.cache,  # type: ignore[arg-type]
                shared_prefix=self.template_prefix if settings.share_prefix else None, prefix_store=self._prefix_states,
                on_step=on_step,
            )
        return new_ids


def _file_key(image: Any) -> tuple[str, int, int] | None:
    """(path, size, mtime) for an image file; None for in-memory images (never cached: they may be mutated)."""
    if image is None or hasattr(image, "convert"):
        return None
    try:
        stat = Path(image).stat()
    except (OSError, TypeError):
        return None
    return str(Path(image).resolve()), stat.st_size, stat.st_mtime_ns
