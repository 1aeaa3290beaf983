"""The embedded local model on this machine: turn latency, tokens per second, and the share of
turns whose decision was schema-valid without a repair, over the shipped conversations (the
demo customers' messages and the customer turns of the eval suites). With the model in its
default role (``write``: the rules decide, it writes answers), also: how many turns it wrote,
the share whose reply was used, calls per written turn, their latency, and the claims the
policy's grounding rule caught (``ungrounded_claim``).

    .venv/bin/python bench/local_llm.py [--turns 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import machine as machine_name  # bench/common.py
from common import percentile
from rich.console import Console
from rich.progress import track
from rich.table import Table

from core.settings import Settings
from evals.runner import SUITES_DIR, load_suites
from journey.demo import DEMO_FILE
from journey.runtime import build_container
from journey.turns import InboundRequest
from prompts import read_yaml


def conversations(limit: int) -> list[tuple[str, str]]:
    """(channel, text) from the demo data, then the eval suites' customer turns."""
    demo = read_yaml(DEMO_FILE)
    out = [(m["channel"], m["text"]) for c in demo["customers"] for m in c.get("messages", [])]
    for suite in load_suites([SUITES_DIR]):
        for case in suite.cases:
            out += [(t.channel, t.say) for t in case.turns if t.say]
            if case.persona:
                out.append((case.persona.channel, case.persona.opening))
    return out[:limit]


def raw_speeds(base_url: str) -> dict[str, float]:
    """Generation and prompt processing speed, measured directly on the server."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="local")
    t0 = time.perf_counter()
    out = client.chat.completions.create(
        model="local", temperature=0, max_tokens=128,
        messages=[{"role": "user", "content": "Count from 1 to 200, comma separated."}],
    )
    gen = (out.usage.completion_tokens if out.usage else 0) / (time.perf_counter() - t0)
    long_prompt = " ".join(f"item {i} is fine." for i in range(400))
    t0 = time.perf_counter()
    out = client.chat.completions.create(
        model="local", temperature=0, max_tokens=1,
        messages=[{"role": "user", "content": long_prompt}],
    )
    pp = (out.usage.prompt_tokens if out.usage else 0) / (time.perf_counter() - t0)
    return {"generation_tokens_per_s": round(gen, 1), "prompt_tokens_per_s": round(pp, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    turns = conversations(args.turns)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp), brain="local")  # type: ignore[call-arg]
        start = time.perf_counter()
        container = build_container(settings)
        ready_s = time.perf_counter() - start
        if container.brain.name != "local":
            raise SystemExit(f"the local model did not start: {container.brain_note}")
        latencies, prompt_tok, completion_tok, valid, calls = [], 0, 0, 0, 0
        written: list[float] = []
        used = caught = 0
        role = None
        try:
            speeds = raw_speeds(container.local_llm.base_url)  # type: ignore[union-attr]
            for i, (channel, text) in enumerate(track(turns, description="local turns")):
                who = {"web_chat": {"web_chat_id": f"b{i}"}, "email": {"email": f"b{i}@x.io"}}
                customer = who.get(channel, {"phone": f"+1555000{i:04d}"})
                request = InboundRequest.model_validate(
                    {"channel": channel, "customer": customer, "text": text}
                )
                t0 = time.perf_counter()
                result = container.orchestrator.handle_message(request)
                latencies.append((time.perf_counter() - t0) * 1000)
                b = result.decision.brain
                prompt_tok += b.prompt_tokens
                completion_tok += b.completion_tokens
                calls += b.llm_calls
                valid += b.fallback_reason is None and not b.repaired
                role = b.role or role
                if b.llm_calls:
                    written.append(latencies[-1])
                    used += b.fallback_reason is None
                caught += any("ungrounded_claim" in v.reason_codes
                              for v in result.decision.verdicts)
        finally:
            container.close()
    total_s = sum(latencies) / 1000
    result = {
        "machine": machine_name(),
        "turns": len(latencies),
        "ready_s": round(ready_s, 1),
        "p50_ms": round(statistics.median(latencies)),
        "p95_ms": round(percentile(latencies, 0.95) or 0.0),
        "llm_calls_per_turn": round(calls / len(latencies), 2),
        # completion tokens over whole-turn time (prompt processing included)
        "completion_tokens_per_turn_s": round(completion_tok / total_s, 1),
        "prompt_tokens_per_turn": round(prompt_tok / len(latencies)),
        **speeds,
        "valid_without_repair": round(valid / len(latencies), 3),
        "role": role,
        "turns_the_model_answered": len(written),
        "model_reply_used": round(used / len(written), 3) if written else None,
        "llm_calls_per_answered_turn": round(calls / len(written), 2) if written else None,
        "answered_p50_ms": round(statistics.median(written)) if written else None,
        "answered_p95_ms": round(percentile(written, 0.95) or 0.0) if written else None,
        "ungrounded_claims_caught": caught,
    }
    table = Table(title=f"Local model ({machine_name()}), {len(latencies)} turns")
    for key in result:
        if key != "machine":
            table.add_row(key.replace("_", " "), str(result[key]))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
