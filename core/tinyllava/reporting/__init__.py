"""What a person looks at after a run: loss curves, score charts, run listings (matplotlib imported lazily)."""
