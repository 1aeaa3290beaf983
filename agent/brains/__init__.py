"""Brains decide a turn: the offline rules brain, and an LLM over any OpenAI-compatible API."""
