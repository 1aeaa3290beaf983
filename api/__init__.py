"""The HTTP API (FastAPI): thin routes over the orchestrator and the store."""
