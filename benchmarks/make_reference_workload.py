"""Prepare the reference training workload of ``shared/bench`` on this stack (transformers 5).

``shared/bench/make_tiny_models.py`` builds its Llama tokenizer with ``LlamaTokenizer(vocab_file=...)``,
which transformers 5 no longer reads (the tokenizer ends up with 3 tokens and the LLM with a vocabulary
of 3). This wrapper runs the shared scripts unchanged except for that step: it rebuilds the tokenizer
from the SentencePiece model the shared script trained, with the same settings, before the LLM is
sized from it.

    python benchmarks/make_reference_workload.py --bench ../shared/bench --out /tmp/bench/data
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

TOKENIZER_SETTINGS: dict[str, Any] = dict(
    bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>", add_bos_token=True,
    add_eos_token=False, legacy=True, padding_side="right", clean_up_tokenization_spaces=False,
)


def _load(path: Path) -> ModuleType:
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixed_build_tokenizer(original: Any) -> Any:
    def build(out_dir: str, seed: int, vocab_size: int, corpus_n: int, max_len: int) -> int:
        from transformers import LlamaTokenizer

        original(out_dir, seed, vocab_size, corpus_n, max_len)  # trains and writes tokenizer.model
        folder = Path(out_dir)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
        tokenizer = LlamaTokenizer.from_pretrained(folder, model_max_length=max_len, **TOKENIZER_SETTINGS)
        if len(tokenizer) != vocab_size:
            raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, expected {vocab_size}")
        tokenizer.save_pretrained(folder)
        return len(tokenizer)

    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "bench")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    subprocess.run([sys.executable, str(args.bench / "gen_synth_data.py"), "--out", str(args.out),
                    "--n", str(args.n), "--seed", str(args.seed)], check=True)
    models = _load(args.bench / "make_tiny_models.py")
    models.build_tokenizer = _fixed_build_tokenizer(models.build_tokenizer)
    sys.argv = [sys.argv[0], "--out", str(args.out / "models"), "--seed", str(args.seed)]
    models.main()


if __name__ == "__main__":
    main()
