"""Self-contained checkpoint directories: manifest, safetensors weights, tokenizer, image processor."""

from tinyllava.checkpoint.load import Loaded, load_checkpoint, read_manifest
from tinyllava.checkpoint.save import save_checkpoint

__all__ = ["Loaded", "load_checkpoint", "read_manifest", "save_checkpoint"]
