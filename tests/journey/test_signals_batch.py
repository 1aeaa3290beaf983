"""A batch of events, set-based in one transaction, gives exactly what the same events give
one per request: the verdicts, the stored rows, the profiles, the jobs (journeys fired and
cancelled, cool-downs, the CRM sync out) and the stage changes — on SQLite and PostgreSQL,
through the real server."""

from __future__ import annotations

import difflib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from core.clock import FixedClock
from core.domain import Identity
from journey.runtime import Container
from tests.conftest import ContainerFactory
from tests.server import client, running_server

NAMES = ("dana", "eli", "fay", "gus", "hal", "ivy", "gone")


def _ev(ns: str, eid: str, etype: str, who: str, clock: FixedClock, minutes: float = 0,
        **extra: Any) -> dict[str, Any]:
    customer = extra.pop("customer", {"email": f"{who}@{ns}.example"})
    return {"id": f"{ns}-{eid}", "type": etype, "customer": customer,
            "properties": extra.pop("properties", {}),
            "occurred_at": (clock.now() + timedelta(minutes=minutes)).isoformat(), **extra}


def _setup(ns: str, clock: FixedClock) -> list[dict[str, Any]]:
    """What each customer did before: eli has a pending nurture job, gone will be erased."""
    return [
        _ev(ns, "s1", "content_download", "eli", clock, -60),
        _ev(ns, "s2", "page_view", "gone", clock, -60),
        _ev(ns, "s3", "page_view", "hal", clock, -50, properties={"page": "docs"}),
    ]


def _phone(ns: str) -> str:
    return f"+1415555{len(ns):04d}"  # one per namespace


def _batch(ns: str, clock: FixedClock) -> list[Any]:
    pricing = {"page": "pricing"}
    phone = _phone(ns)
    return [
        # dana: a download (nurture queued), then a pricing surge in the batch cancels it
        _ev(ns, "b1", "content_download", "dana", clock, -20,
            customer={"email": f"dana@{ns}.example", "name": "Dana"}),
        _ev(ns, "b2", "page_view", "dana", clock, -15, properties=pricing),
        _ev(ns, "b3", "page_view", "eli", clock, -14, properties=pricing),
        _ev(ns, "b4", "page_view", "dana", clock, -10, properties=pricing),
        {"id": f"{ns}-bad1", "customer": {"email": f"dana@{ns}.example"}},  # no type
        _ev(ns, "b5", "page_view", "dana", clock, -5, properties=pricing),
        _ev(ns, "b4", "page_view", "dana", clock, -4, properties=pricing),  # a repeat
        _ev(ns, "s3", "page_view", "hal", clock, -3),  # stored before: a duplicate
        # eli: the surge cancels the nurture queued by an earlier request
        _ev(ns, "b6", "page_view", "eli", clock, -9, properties=pricing),
        _ev(ns, "b7", "page_view", "eli", clock, -2, properties=pricing),
        _ev(ns, "b8", "page_view", "gone", clock, -1, properties=pricing),  # erased
        # fay: a new identity joins her profile; traits make her a customer
        _ev(ns, "b9", "page_view", "fay", clock, -8, properties={"card": "4111 1111 1111 1111"}),
        _ev(ns, "b10", "page_view", "fay", clock, -7,
            customer={"email": f"fay@{ns}.example", "phone": phone},
            traits={"plan": "pro", "note": "card 4111111111111111"}),
        _ev(ns, "b11", "nps_answered", "fay", clock, -6, properties={"score": 10},
            customer={"phone": phone}),
        _ev(ns, "b12", "page_view", "fay", clock, 60),  # an hour ahead
        # gus: a cart, a checkout (on_event: purchased), a second download within cool-down
        _ev(ns, "b13", "cart_abandoned", "gus", clock, -6, properties={"value": 80}),
        _ev(ns, "b14", "content_download", "gus", clock, -5),
        _ev(ns, "b15", "content_download", "gus", clock, -4),
        _ev(ns, "b16", "checkout_completed", "gus", clock, -3),
        # hal: considers (download), then cancels: churned by the on_event rule
        _ev(ns, "b17", "content_download", "hal", clock, -2),
        _ev(ns, "b18", "subscription_cancelled", "hal", clock, -1),
        _ev(ns, "b19", "nps_answered", "ivy", clock, 2, properties={"score": 3}),
        "not an event",
    ]


def _post(http: Any, events: list[Any]) -> list[dict[str, Any]]:
    response = http.post("/v1/events", json={"events": events})
    assert response.status_code in (200, 422), response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _snapshot(container: Container, ns: str, results: list[dict[str, Any]]) -> str:
    """Everything the events wrote for namespace ``ns``, with ids made comparable."""
    store = container.store
    cids: dict[str, str] = {}
    for name in NAMES:
        found = store.find_customer(Identity(kind="email", value=f"{name}@{ns}.example"))
        if found is not None:
            cids[found.id] = name
    jobs = {j.id: j for cid in cids for j in store.jobs.list(customer_id=cid, limit=1000)}
    alias = {**cids, **{jid: j.dedupe_key for jid, j in jobs.items()
                        if not j.dedupe_key.startswith("sync:")}}

    def named(value: Any) -> Any:
        if isinstance(value, str):
            return alias.get(value, value)
        if isinstance(value, dict):
            return {named(k): named(v) for k, v in value.items()}
        if isinstance(value, list):
            return [named(v) for v in value]
        return value

    out: dict[str, Any] = {"results": [{k: v for k, v in r.items()} for r in results]}
    for cid, name in sorted(cids.items(), key=lambda kv: kv[1]):
        profile = store.get_customer(cid)
        assert profile is not None
        events = store.recent_events(cid, since=datetime(2000, 1, 1, tzinfo=UTC), limit=1000)
        out[name] = {
            "profile": profile.model_dump(mode="json", include={
                "name", "identities", "attributes", "lifecycle_stage", "timezone"}),
            "events": sorted(json.dumps(named(e.model_dump(mode="json")), sort_keys=True)
                             for e in events),
            "activities": sorted(json.dumps(named({k: a[k] for k in ("kind", "body", "done")}),
                                            sort_keys=True)
                                 for a in store.crm_activities(cid)),
            "jobs": sorted(json.dumps(named({
                "kind": j.kind, "status": j.status, "journey": j.journey, "tag": j.tag,
                "due_at": j.due_at.isoformat() if j.kind != "sync" else None, "error": j.error,
                "key": j.dedupe_key if j.kind != "sync" else None,
                "payload": {k: v for k, v in j.payload.items() if k not in ("id", "occurred_at")},
            }), sort_keys=True, default=str) for j in jobs.values() if j.customer_id == cid),

        }
    text = json.dumps(named(out), sort_keys=True, indent=1, default=str).replace(ns, "NS")
    text = text.replace(_phone(ns), "PHONE")
    text = re.sub(r"act_\d+", "act", text)  # the activities' own ids
    return re.sub(r"cus_\d+", lambda m: cids.get(m.group(), m.group()), text)


def test_a_batch_gives_exactly_what_the_same_events_give_one_per_request(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    container = make_container(crm_webhook_url="https://crm.example.test/hook",
                               crm_webhook_secret="s")
    signals = container.signals
    assert signals is not None and container.erasure is not None
    snapshots = {}
    with running_server(container) as base, client(base) as http:
        for ns in ("nsbatch", "nssingle", "nsold"):
            _post(http, _setup(ns, clock))
            gone = container.store.find_customer(Identity(kind="email",
                                                          value=f"gone@{ns}.example"))
            assert gone is not None
            container.erasure.erase(gone.id, by="test")
        one_by_one = signals._one
        calls: list[str] = []

        def counted(index: int, event: Any, at: datetime) -> Any:
            calls.append(event.id)
            return one_by_one(index, event, at)

        signals._one = counted  # type: ignore[method-assign]
        results = {"nsbatch": _post(http, _batch("nsbatch", clock))}
        assert calls == []  # set-based: no event went on its own
        signals._one = one_by_one  # type: ignore[method-assign]
        results["nssingle"] = [{**_post(http, [e])[0], "index": i}
                               for i, e in enumerate(_batch("nssingle", clock))]
        signals.batched = False  # the path each event took on its own before batches
        try:
            results["nsold"] = _post(http, _batch("nsold", clock))
        finally:
            signals.batched = True
    for ns in ("nsbatch", "nssingle", "nsold"):
        snapshots[ns] = _snapshot(container, ns, results[ns])
    for other in ("nssingle", "nsold"):
        diff = "\n".join(difflib.unified_diff(snapshots["nsbatch"].splitlines(),
                                               snapshots[other].splitlines(), "nsbatch", other,
                                               lineterm=""))
        assert not diff, diff
    # and it is the behaviour asked for, not only the same in both
    by_id = {r["id"]: r for r in results["nsbatch"] if r["id"]}
    statuses = [r["status"] for r in results["nsbatch"]]
    assert statuses.count("duplicate") == 2 and statuses.count("rejected") == 4
    assert "identity erased" in by_id["nsbatch-b8"]["errors"][0]
    assert by_id["nsbatch-b5"]["fired"] == ["pricing_surge"]
    assert by_id["nsbatch-b5"]["stage"] == "decision"
    assert by_id["nsbatch-b7"]["fired"] == ["pricing_surge"]
    assert by_id["nsbatch-b15"]["fired"] == []  # the nurture's cool-down
    assert by_id["nsbatch-b18"]["stage"] == "churned"
    data = json.loads(snapshots["nsbatch"])
    assert "4111" not in snapshots["nsbatch"]  # card numbers masked
    dana_jobs = [json.loads(j) for j in data["dana"]["jobs"]]
    nurture = [j for j in dana_jobs if j["journey"] == "whitepaper_nurture"]
    assert [j["status"] for j in nurture] == ["cancelled"]
    assert any(j["kind"] == "sync" for j in dana_jobs)
    eli_nurture = [json.loads(j) for j in data["eli"]["jobs"]
                   if json.loads(j)["journey"] == "whitepaper_nurture"]
    assert [j["status"] for j in eli_nurture] == ["cancelled"]
    assert [i["kind"] for i in data["fay"]["profile"]["identities"]] == ["email", "phone"]
    assert data["fay"]["profile"]["lifecycle_stage"] == "advocacy"
    _sync_in_order(container)


def test_a_batch_whose_identities_join_two_profiles_merges_them_as_one_by_one_does(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    container = make_container()
    signals, store = container.signals, container.store
    assert signals is not None
    signals.ingest([{"id": "m0", "type": "page_view", "customer": {"email": "kim@x.example"},
                     "properties": {"page": "pricing"}}])
    result = signals.ingest([
        {"id": "m1", "type": "page_view", "customer": {"web_chat_id": "wc_kim"},
         "properties": {"page": "pricing"}},
        {"id": "m2", "type": "page_view", "properties": {"page": "pricing"},
         "customer": {"email": "kim@x.example", "web_chat_id": "wc_kim"}},
        {"id": "m1", "type": "page_view", "customer": {"web_chat_id": "wc_kim"}},
    ])
    assert [r.status for r in result.results] == ["accepted", "accepted", "duplicate"]
    kim = store.find_customer(Identity(kind="email", value="kim@x.example"))
    assert kim is not None and result.results[1].customer_id == kim.id
    assert {(i.kind, i.value) for i in kim.identities} == {
        ("email", "kim@x.example"), ("web_chat_id", "wc_kim")}
    (merge,) = store.merges(kim.id)
    assert merge["survivor_id"] == kim.id and merge["moved"]["events"] == 1
    assert sorted(e.id for e in store.recent_events(
        kim.id, since=clock.now() - timedelta(days=1))) == ["m0", "m1", "m2"]
    # the three pricing views (one before the merge) are a surge on the one profile
    assert result.results[1].fired == ["pricing_surge"]


def _sync_in_order(container: Container) -> None:
    # the CRM gets dana's changes in the order they happened (the worker takes the due first)
    dana = container.store.find_customer(Identity(kind="email", value="dana@nsbatch.example"))
    assert dana is not None
    sync = sorted((j for j in container.store.jobs.list(customer_id=dana.id, kind="sync")),
                  key=lambda j: (j.due_at, j.id))
    assert [(j.payload["type"], min(j.payload["data"])) for j in sync] == [
        ("profile.updated", "created"), ("profile.updated", "name"),
        ("profile.updated", "attributes"), ("stage.changed", "from"), ("crm.activity", "body"),
        ("profile.updated", "attributes"), ("profile.updated", "attributes"),
        ("profile.updated", "attributes"), ("stage.changed", "from"), ("crm.activity", "body"),
    ]
    assert [j.payload["data"].get("to") for j in sync if j.payload["type"] == "stage.changed"
            ] == ["consideration", "decision"]
