"""The eval runner: benchmark items -> batched answers -> official-format files -> scores -> report."""
