"""Eval suites on conversation transcripts (datasets, scorers, runner). See evals/README.md."""
