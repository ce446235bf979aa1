"""Model assembly: vision tower -> feature selection -> connector -> spliced into the LLM's embeddings."""
