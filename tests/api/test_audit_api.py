"""The audit trail and the policy over HTTP, on a real server: every decision queryable by
customer and reason code, the policy in force visible and reloadable without a restart."""

from __future__ import annotations

from pathlib import Path

from policy.loader import default_policy_path
from tests.conftest import ContainerFactory
from tests.server import client, running_server


def sms(text: str, phone: str = "+15550002222") -> dict[str, object]:
    return {"channel": "sms", "customer": {"phone": phone}, "text": text}


def test_decisions_are_queryable_by_customer_and_reason(make_container: ContainerFactory) -> None:
    c = make_container()
    with running_server(c) as base:
        http = client(base)
        first = http.post("/v1/messages", json=sms("what does Growth include?")).json()
        stop = http.post("/v1/messages", json=sms("STOP")).json()
        after = http.post("/v1/messages", json=sms("and Enterprise?")).json()
        other = http.post("/v1/messages", json=sms("STOP", phone="+15550003333")).json()
        customer = first["customer_id"]

        found = http.get("/v1/decisions", params={"customer_id": customer,
                                                  "reason": "consent_revoked"})
        assert found.status_code == 200
        [decision] = found.json()["decisions"]
        assert decision["id"] == after["decision"]["id"]
        [verdict] = decision["verdicts"]
        assert (verdict["tool"], verdict["outcome"], verdict["step"]) == (
            "send_message", "deny", "eligibility"
        )
        assert decision["inputs"]["consent"]["sms"] == {"service": "revoked",
                                                        "marketing": "revoked"}
        assert decision["policy_version"] == c.policy.get().version

        qualified = http.get(
            "/v1/decisions", params={"reason": "send_message:opt_out_confirmation"}
        )
        assert [d["id"] for d in qualified.json()["decisions"]] == [
            other["decision"]["id"], stop["decision"]["id"]
        ]  # newest first, across customers
        everything = http.get("/v1/decisions", params={"customer_id": customer}).json()
        assert len(everything["decisions"]) == 3
        assert http.get("/v1/decisions", params={"reason": "no_such_code"}).json()[
            "decisions"] == []
        bad = http.get("/v1/decisions", params={"limit": 0})
        assert bad.status_code == 422 and "limit" in bad.json()["detail"]
        assert client(base, key=None).get("/v1/decisions").status_code == 401


def test_the_policy_reloads_without_a_restart(
    make_container: ContainerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(default_policy_path().read_text())
    c = make_container(policy_path=path)
    with running_server(c) as base:
        http = client(base)
        shown = http.get("/v1/policy").json()
        assert shown["source"] == str(path) and shown["last_reload_error"] is None
        first = http.post("/v1/messages", json=sms("hi")).json()
        assert first["decision"]["policy_version"] == shown["version"]

        # the sms channel goes down: the next reply on sms is not sent
        path.write_text(path.read_text().replace(
            "sms: {available: true", "sms: {available: false"
        ))
        reloaded = http.post("/v1/policy/reload").json()
        assert reloaded["version"] != shown["version"]
        assert reloaded["policy"]["contact"]["channels"]["sms"]["available"] is False
        second = http.post("/v1/messages", json=sms("what does Growth include?")).json()
        assert second["decision"]["policy_version"] == reloaded["version"]
        [reply] = [a for a in second["actions"] if a["tool"] == "send_message"]
        assert (reply["outcome"], reply["reason_codes"]) == ("deny", ["channel_unavailable"])

        path.write_text("contact:\n  caps:\n    - {name: daily, max: 2}\n")
        refused = http.post("/v1/policy/reload")
        assert refused.status_code == 422
        assert "line 3: contact.caps.0" in refused.json()["detail"]
        still = http.get("/v1/policy").json()
        assert still["version"] == reloaded["version"]
        assert still["last_reload_error"][0].startswith("line 3")
        reader = client(base, key="test-writer")
        assert reader.get("/v1/policy").status_code == 403
