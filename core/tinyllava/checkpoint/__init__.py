"""Self-contained checkpoint directories: manifest, safetensors weights, tokenizer, image processor,
and PEFT adapters when a stage saved them."""

from tinyllava.checkpoint.load import Loaded, load_checkpoint, read_manifest
from tinyllava.checkpoint.merge import merge_checkpoint
from tinyllava.checkpoint.save import save_checkpoint

__all__ = ["Loaded", "load_checkpoint", "merge_checkpoint", "read_manifest", "save_checkpoint"]
