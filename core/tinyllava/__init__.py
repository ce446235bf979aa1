"""tinyllava: a slim core for LLaVA-style small multimodal models; everything concrete is a plugin."""

__version__ = "0.1.0"

__all__ = ["__version__"]
