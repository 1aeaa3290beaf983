"""journey-orchestrator: the real-time, policy-checked decision layer for customer journeys."""

__version__ = "0.1.0"
