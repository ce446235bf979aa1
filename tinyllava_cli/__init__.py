"""The `tinyllava` command line; every sub-command imports its heavy parts only when it runs."""
