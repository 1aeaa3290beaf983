"""Simulated customers: what the persona says next, given the conversation so far.

A scripted persona follows rules over the bot's last reply. An LLM persona asks any
OpenAI-compatible model to play a customer with a goal and hidden facts (revealed only when the
bot asks), and answers DONE when the goal is reached.
"""

from __future__ import annotations

from typing import Any, Protocol

from evals.schema import Persona

DONE = "DONE"


class Voice(Protocol):
    def next(self, persona: Persona, transcript: list[tuple[str, str]]) -> str | None:
        """The next customer message, or None when the persona is done."""


class ScriptedVoice:
    def next(self, persona: Persona, transcript: list[tuple[str, str]]) -> str | None:
        last_reply = next((text for who, text in reversed(transcript) if who == "bot"), "")
        for line in persona.script:
            if not line.when or any(w.lower() in last_reply.lower() for w in line.when):
                return line.say
        return None


class LLMVoice:
    """An LLM plays the customer (temperature from settings; one call per turn)."""

    def __init__(self, client: Any, model: str, temperature: float = 0.7) -> None:
        self.client = client
        self.model = model
        self.temperature = temperature
        self.calls = 0

    def next(self, persona: Persona, transcript: list[tuple[str, str]]) -> str | None:
        facts = "\n".join(f"- {k}: {v}" for k, v in persona.hidden_facts.items()) or "- none"
        system = (
            "You are a customer talking to a company's assistant. Stay in character; write "
            "only your next message, short, like a real customer.\n"
            f"Your goal: {persona.goal}\n"
            f"Facts you know (share one only when asked about it):\n{facts}\n"
            f"When your goal is reached, or you are handed to a person, answer exactly {DONE}."
        )
        messages = [{"role": "system", "content": system}] + [
            {"role": "assistant" if who == "customer" else "user", "content": text}
            for who, text in transcript
        ]
        response = self.client.chat.completions.create(
            model=self.model, messages=messages, temperature=self.temperature, max_tokens=200
        )
        self.calls += 1
        text = (response.choices[0].message.content or "").strip()
        return None if not text or text.upper().startswith(DONE) else text
