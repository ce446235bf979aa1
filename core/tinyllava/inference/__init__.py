"""Answering questions with a loaded checkpoint: prompts, image preprocessing, batched generate()."""

from tinyllava.inference.pipeline import Pipeline

__all__ = ["Pipeline"]
