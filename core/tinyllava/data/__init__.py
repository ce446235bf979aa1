"""The data pipeline: LLaVA JSON records -> checked -> tokenised per turn -> batches."""
