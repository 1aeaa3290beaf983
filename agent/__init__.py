"""The LangGraph agent.

load context → understand → decide → policy gate → act → respond → record.
"""
