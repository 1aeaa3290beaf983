"""Policy: the gate every proposed action passes before a tool runs."""
