"""Inference throughput of the ORIGINAL TinyLLaVA Factory on the reference workload: answers/s and load time.

Follows the original's batch evaluation path, `tinyllava/eval/model_vqa_loader.py::eval_model`, from a checkout given
with `--src`: `disable_torch_init()`, `load_pretrained_model(DIR)`, `TextPreprocess(tokenizer, 'llama')` (the chat
template of the finetune stage), `ImagePreprocess(image_processor, model.config)`, its `CustomDataset` (the question
behind "<image>\\n", its prompt in eval mode, the image through the processor), then `model.generate(...)` with the
arguments it uses (greedy: do_sample False, temperature 0, num_beams 1; pad_token_id; use_cache; image_sizes) and
`tokenizer.batch_decode(..., skip_special_tokens=True)`. Questions: the first human turn of the first `--n` image
records of DATA/finetune.json, as benchmarks/inference_throughput.py asks them; 16 new tokens.

    VENV/bin/python benchmarks/original/run_inference.py --src CHECKOUT --data-dir DATA \\
        --model OUT/tlf-finetune --n 200 --batch-size 1 --threads 2 --out OUT/infer-b1.json

Differences from the original's script, all forced by the machine or the batch size: CPU instead of `.cuda()`
(the images stay float32: its non-LoRA load ignores the fp16 request, so the model it runs is float32 anyway);
`--workers 0` data loading (it uses 4 workers) so that the 2 cores do the model's work; `--batch-size` > 1 (it
asserts 1) gets a collate that pads the prompts on the LEFT with the pad id, passes their attention mask, and sets
`model.config.tokenizer_padding_side = 'left'`, so that the original's image splice re-pads on the left too
(right padding would put the pads between a prompt and its answer).

Timing as in benchmarks/inference_throughput.py: `import_s` (torch + transformers), `tinyllava_import_s` (the
original's package, its plugin registries), `load_s` (`load_pretrained_model`), `load_warm_s` (a second load);
one untimed warm-up batch, then all `--n` questions timed: answers/s = n / seconds, and the best chunk of >= 50.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # benchmarks/: chunked_rate

import tlf_shims  # noqa: E402
from chunked_rate import timed_answers  # noqa: E402


def questions(data_dir: Path, n: int) -> list[dict[str, Any]]:
    """The reference questions, in the original's question-file shape (question_id, image, text)."""
    out = []
    for rec in json.loads((data_dir / "finetune.json").read_text()):
        if not rec.get("image"):
            continue
        text = rec["conversations"][0]["value"].replace("<image>", "").strip()
        out.append({"question_id": rec["id"], "image": rec["image"], "text": text})
        if len(out) == n:
            return out
    raise SystemExit(f"{data_dir / 'finetune.json'} has only {len(out)} image records; asked for {n}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="a TinyLLaVA Factory checkout (main @53f12c7)")
    p.add_argument("--data-dir", type=Path, required=True, help="the workload: finetune.json, images/")
    p.add_argument("--model", type=Path, required=True,
                   help="a checkpoint of the original, e.g. run_training.py's OUT/tlf-finetune")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--conv-mode", default="llama", help="the original's template name (the finetune stage's)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (the original: 4)")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--out", type=Path, required=True, help="result JSON")
    args = p.parse_args(argv)

    os.environ.update(tlf_shims.offline_env(args.threads))  # before torch starts its thread pools
    t0 = time.perf_counter()
    import torch
    import transformers  # noqa: F401
    from transformers import PreTrainedModel  # noqa: F401  (transformers' model machinery: not load time)

    torch.set_num_threads(args.threads)
    import_s = time.perf_counter() - t0

    src = tlf_shims.install(args.src)
    data_dir = args.data_dir.expanduser().resolve()
    model_path = str(args.model.expanduser().resolve())
    if "lora" in model_path and not (Path(model_path) / "adapter_config.json").is_file():
        raise SystemExit(f"{model_path}: the original loads any path containing 'lora' as a LoRA checkpoint")

    t = time.perf_counter()
    import importlib

    from torch.utils.data import DataLoader

    from tinyllava.data import ImagePreprocess, TextPreprocess
    from tinyllava.model import load_pretrained_model
    from tinyllava.utils import disable_torch_init

    vqa_loader = importlib.import_module("tinyllava.eval.model_vqa_loader")
    tinyllava_import_s = time.perf_counter() - t

    disable_torch_init()
    t = time.perf_counter()
    model, tokenizer, image_processor, context_len = load_pretrained_model(model_path, device="cpu")
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    load_pretrained_model(model_path, device="cpu")
    load_warm_s = time.perf_counter() - t
    if model.dtype != torch.float32:  # the LoRA branch casts to fp16 for a GPU; CPU runs float32
        model.to(torch.float32)
    model.eval()

    text_processor = TextPreprocess(tokenizer, args.conv_mode)
    image_preprocess = ImagePreprocess(image_processor, model.config)
    qs = questions(data_dir, args.n)
    vqa_loader.args = argparse.Namespace(image_folder=str(data_dir / "images"))  # CustomDataset reads a global
    dataset = vqa_loader.CustomDataset(qs, str(data_dir / "images"), text_processor, image_preprocess)

    pad_id = tokenizer.pad_token_id
    if args.batch_size > 1:
        model.config.tokenizer_padding_side = "left"
        tokenizer.padding_side = "left"

    def collate_left(batch: list[tuple[Any, Any, Any]]) -> tuple[Any, Any, Any, Any]:
        ids, images, sizes = zip(*batch, strict=True)
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, width - len(x):] = x
            mask[row, width - len(x):] = 1
        return input_ids, mask, torch.stack(images, dim=0), sizes

    def collate_one(batch: list[tuple[Any, Any, Any]]) -> tuple[Any, Any, Any, Any]:
        input_ids, images, sizes = vqa_loader.collate_fn(batch)  # the original's (batch size 1)
        return input_ids, None, images, sizes

    collate = collate_one if args.batch_size == 1 else collate_left

    def answer(items: list[int]) -> dict[str, str]:
        subset = torch.utils.data.Subset(dataset, items)
        loader = DataLoader(subset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                            collate_fn=collate)
        out: dict[str, str] = {}
        cursor = 0
        for input_ids, mask, image_tensor, image_sizes in loader:
            extra = {} if mask is None else {"attention_mask": mask}
            with torch.inference_mode():
                output_ids = model.generate(
                    input_ids, images=image_tensor.to(dtype=torch.float32), pad_token_id=pad_id,
                    do_sample=False, temperature=0, top_p=None, num_beams=1,
                    max_new_tokens=args.max_new_tokens, image_sizes=image_sizes, use_cache=True, **extra)
            for text in tokenizer.batch_decode(output_ids, skip_special_tokens=True):
                out[qs[items[cursor]]["question_id"]] = text.strip()
                cursor += 1
        return out

    indices = list(range(len(qs)))
    if not args.no_warmup:
        answer(indices[: args.batch_size])
    answers, seconds, best = timed_answers(indices, args.batch_size, answer)
    import resource

    result = {
        "src": str(src), "model": model_path, "n": len(answers), "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens, "conv_mode": args.conv_mode, "threads": torch.get_num_threads(),
        "answers_per_s": len(answers) / seconds, "answers_per_s_best": best,
        "seconds": seconds, "import_s": import_s, "tinyllava_import_s": tinyllava_import_s, "load_s": load_s,
        "load_warm_s": load_warm_s, "context_len": context_len,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "padding_side": model.config.tokenizer_padding_side, "shims": tlf_shims.APPLIED,
        "sample": [answers[q["question_id"]] for q in qs[:3]], "answers": answers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"original inference, batch {args.batch_size}: {result['answers_per_s']:.2f} answers/s "
          f"(best chunk {result['answers_per_s_best']:.2f}), load {load_s:.3f} s (warm {load_warm_s:.3f} s, "
          f"package import {tinyllava_import_s:.2f} s), {len(answers)} answers; sample: {result['sample'][0]!r}")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
