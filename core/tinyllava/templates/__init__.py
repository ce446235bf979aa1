"""Generic machinery for chat templates (concrete templates live in plugins)."""
