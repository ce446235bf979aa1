"""Kits: base classes and helpers that several plugins build on (never a registered component).

A plugin imports only the core; code two plugins share lives here, so that installing, blocking or
removing one plugin never breaks another. Every kit module is import-light (torch and transformers are
imported inside functions), so a plugin's component module may import a kit at the top.

- `tinyllava.kits.factory_templates`: TinyLLaVA Factory's `{system} USER: ... ASSISTANT: ...` templates.
- `tinyllava.kits.hf_family`: an LLM family that transformers supports natively (model_type -> class).
- `tinyllava.kits.tokenizers`: byte-level BPE tokenizers trained locally with a family's special tokens.
"""
