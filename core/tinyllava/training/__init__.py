"""Training: which parameters train, the HF Trainer glue, and the stage runner."""
