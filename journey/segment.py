"""Segment's tracking API, mapped onto our profiles and events (``/v1/identify``, ``/v1/track``,
``/v1/page``, ``/v1/screen``, ``/v1/group``, ``/v1/alias``, ``/v1/batch``).

Who a message is about: ``userId`` is the identity ``external_id``, ``anonymousId`` the identity
``anonymous_id`` (a device or browser id; not ``web_chat_id``, which is where web-chat messages
are delivered). Both given together join their profiles, as any two identities seen together do.

- **identify** upserts the profile: ``traits.email``/``traits.phone`` become identities
  (normalised; an invalid one rejects the message, naming the field), ``name`` (or
  ``firstName`` + ``lastName``) the name, ``context.timezone`` and ``context.locale`` (or the
  traits of those names) the profile's, and the other traits its attributes (merged key by key,
  card numbers and the policy's secrets masked). Then the lifecycle rules are tried (a ``plan``
  trait may make a customer).
- **track** is a behavioural event through :class:`journey.signals.SignalService` (journeys
  fire, lifecycle rules run): ``"Order Completed"`` becomes the type ``order_completed``, the
  name is kept in ``properties.segment.event``. **page** is a ``page_view`` whose
  ``properties.page`` is the page's name as a type (``"Pricing"`` → ``pricing``) or else its
  path (``/pricing`` → ``pricing``); **screen** a ``screen_view`` with ``properties.screen``;
  **group** a ``group`` event with the group's id and traits.
- **alias** links ``previousId`` (an ``anonymous_id`` or an ``external_id``) to ``userId``: two
  profiles are merged into the ``userId``'s (recorded like every merge), else the identity is
  added.
- **consent** (any message), recorded in the consent ledger with the source ``segment``, the
  ``messageId`` as evidence and the message's time: ``context.messaging_subscriptions``
  (Segment Engage: ``{"key": address, "type": "EMAIL"|"SMS"|"WHATSAPP", "status":
  "SUBSCRIBED"|"UNSUBSCRIBED"}``) sets marketing consent on that channel; a consent category
  (``context.consent.categoryPreferences``) named after a channel (``email``, ``sms``,
  ``whatsapp``, or ``<channel> marketing``) grants or revokes marketing on it, a category
  named ``marketing`` only revokes (on every channel: consent must be specific to be given, a
  withdrawal may be general); ``traits.unsubscribed: true`` revokes email marketing.

``messageId`` makes every message idempotent: a track, page, screen or group is an event with
that id; an identify or alias leaves a receipt (:mod:`memory.segment`). The time is Segment's:
``timestamp`` corrected by the client's clock skew (``received - (sentAt - timestamp)``), so a
device whose clock is wrong still stamps its events right.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import (
    ValidationError,
)

from core.clock import Clock, known_zone
from core.domain import CHANNELS, Channel, Identity
from core.effects import Activity, CrmChange
from core.errors import IdentityErased
from core.identity import InvalidIdentity, normal_email, normal_phone
from journey.event_input import (
    EVENT_TYPE,
    FUTURE_TOLERANCE,
    field_errors,
)
from journey.segment_spec import (
    MESSAGE_TYPES,
    MODELS,
    PROFILE_TRAITS,
    SUBSCRIPTION_CHANNEL,
    Alias,
    BatchResult,
    Group,
    Identify,
    ItemResult,
    Message,
    MessageType,
    Page,
    Refused,
    SegmentEvent,
    Track,
    event_type,
    locale_of,
    page_slug,
)
from journey.signals import TRIGGER_LOOKBACK, SignalService
from memory.segment import MessageReceipts
from memory.store import Store
from policy.lifecycle import Lifecycle
from policy.loader import PolicyProvider
from policy.privacy import mask_all

log = logging.getLogger(__name__)

@dataclass
class SegmentService:
    store: Store
    signals: SignalService
    lifecycle: Lifecycle
    clock: Clock
    receipts: MessageReceipts
    #: the policy whose ``privacy`` section masks traits (None: nothing masked)
    policy: PolicyProvider | None = None

    def ingest(
        self,
        messages: list[Any],
        *,
        by: str,
        kind: MessageType | None = None,
        sent_at: datetime | None = None,
        context: dict[str, Any] | None = None,
    ) -> BatchResult:
        """Apply each message on its own: a bad one is rejected with its reasons, the others
        are applied. ``kind``: the type the endpoint implies (None: each message's ``type``);
        ``sent_at`` and ``context``: the batch's, for its messages that have none; ``by``: the
        source (write key) the messages came from, for the consent ledger."""
        results = []
        for index, raw in enumerate(messages):
            result = self._one(index, raw, by=by, kind=kind, sent_at=sent_at,
                               context=context or {})
            if result.status == "rejected":
                log.warning("segment %s %s from %s rejected: %s", result.type,
                            result.message_id, by, "; ".join(result.errors))
            results.append(result)
        count = {s: sum(r.status == s for r in results)
                 for s in ("accepted", "duplicate", "rejected")}
        return BatchResult(accepted=count["accepted"], duplicates=count["duplicate"],
                           rejected=count["rejected"], results=results)

    def _one(self, index: int, raw: Any, *, by: str, kind: MessageType | None,
             sent_at: datetime | None, context: dict[str, Any]) -> ItemResult:
        if not isinstance(raw, dict):
            return ItemResult(index=index, status="rejected", errors=["must be an object"])
        mid = raw.get("messageId") if isinstance(raw.get("messageId"), str) else None
        given = kind or raw.get("type")
        if given not in MESSAGE_TYPES:
            return ItemResult(index=index, message_id=mid, status="rejected", errors=[
                f"type: must be one of {', '.join(MESSAGE_TYPES)}"])
        kind_: MessageType = given  # type: ignore[assignment]
        if context and isinstance(raw.get("context", {}), dict):
            raw = {**raw, "context": {**context, **raw.get("context", {})}}
        result = ItemResult(index=index, type=kind_, message_id=mid, status="rejected")
        try:
            message = MODELS[kind_].model_validate(raw)
        except ValidationError as exc:
            return result.model_copy(update={"errors": field_errors(exc)})
        if message.message_id is None:  # no idempotency without one: a fresh id
            message.message_id = self.store.ids("seg")
            result.message_id = message.message_id
        try:
            at = self._time(message, sent_at)
            if kind_ in ("track", "page", "screen", "group"):
                return self._event(result, kind_, message, at, by)
            if kind_ == "identify" and isinstance(message, Identify):
                return self._identify(result, message, at, by)
            if isinstance(message, Alias):
                return self._alias(result, message, by)
        except Refused as exc:
            return result.model_copy(update={"errors": exc.errors})
        except IdentityErased as exc:  # a late message must not recreate the person
            return result.model_copy(update={"errors": [exc.detail]})
        raise AssertionError(kind_)  # pragma: no cover - MODELS covers MESSAGE_TYPES

    def _time(self, message: Message, batch_sent_at: datetime | None) -> datetime:
        """When it happened, on our clock: ``timestamp`` shifted by the client's clock skew
        (``sentAt`` is the client's clock when it sent), or now without one."""
        now = self.clock.now()
        if message.timestamp is None:
            return now
        sent = message.sent_at or batch_sent_at
        at = now - (sent - message.timestamp) if sent is not None else message.timestamp
        if at > now + FUTURE_TOLERANCE:
            raise Refused([f"timestamp: {message.timestamp.isoformat()} is in the future"
                           + (f" of sentAt {sent.isoformat()}" if sent else "")])
        return at

    # --- track, page, screen, group: events -------------------------------------------------

    def _event(self, result: ItemResult, kind: MessageType, message: Message, at: datetime,
               by: str) -> ItemResult:
        if isinstance(message, Track):
            type_ = event_type(message.event)
            if not EVENT_TYPE.match(type_):
                raise Refused([f"event: {message.event!r} does not make an event type (it "
                               "needs a letter first and at most 80 letters and digits)"])
            properties = {**message.properties,
                          "segment": {"type": "track", "event": message.event}}
        elif isinstance(message, Page):
            type_ = f"{kind}_view"
            slug = page_slug(message.name, message.properties, message.context.page)
            properties = {**message.properties, kind: slug, "segment": {
                "type": kind, **{k: v for k, v in (("name", message.name),
                                                   ("category", message.category)) if v}}}
        elif isinstance(message, Group):
            type_ = "group"
            properties = {"group_id": message.group_id, "traits": message.traits,
                          "segment": {"type": "group"}}
        else:  # pragma: no cover - MODELS decides
            raise AssertionError(kind)
        try:
            event = SegmentEvent.model_validate({
                "id": message.message_id, "type": type_, "properties": properties,
                "customer": {"external_id": message.user_id,
                             "anonymous_id": message.anonymous_id},
                "occurred_at": at,
            })
        except ValidationError as exc:
            raise Refused(field_errors(exc)) from None
        done = self.signals.ingest([event]).results[0]
        result = result.model_copy(update={
            "status": done.status, "customer_id": done.customer_id, "event_type": type_,
            "errors": done.errors, "fired": done.fired, "stage": done.stage})
        if done.status == "accepted" and done.customer_id is not None:
            consent = self._consent(message, by, at)
            if consent:
                self.store.update_profile(done.customer_id, consent)
        return result

    # --- identify: the profile --------------------------------------------------------------

    def _identify(self, result: ItemResult, message: Identify, at: datetime,
                  by: str) -> ItemResult:
        traits = {**message.context.traits, **message.traits}
        identities = message.identities() + self._trait_identities(traits) \
            + self._subscription_identities(message)
        if self.receipts.seen(message.message_id or ""):
            known = next((p for i in identities if (p := self.store.find_customer(i))), None)
            return result.model_copy(update={"status": "duplicate",
                                             "customer_id": known.id if known else None})
        if "intent_scores" in traits:
            raise Refused(["traits.intent_scores: reserved for the scores the journeys' "
                           "signals keep"])
        timezone = self._checked(traits, "timezone", known_zone) or message.context.timezone
        locale = self._checked(traits, "locale", locale_of) or message.context.locale
        profile, _ = self.store.resolve_customer(
            identities, self.lifecycle.default_stage, timezone=timezone or "",
            stages=self.lifecycle.stages)
        attributes = {k: v for k, v in traits.items() if k not in PROFILE_TRAITS}
        name = traits.get("name") or " ".join(
            str(traits[k]) for k in ("firstName", "first_name", "lastName", "last_name")
            if isinstance(traits.get(k), str) and traits[k].strip()) or None
        if self.policy is not None:
            privacy = self.policy.get().privacy
            attributes = mask_all(attributes, privacy)
            name = mask_all(name, privacy)
        changes = [CrmChange(fields=attributes), *self._consent(message, by, at)]
        self.store.update_profile(profile.id, changes,
                                  name=str(name)[:200] if name else None,
                                  timezone=timezone, locale=locale)
        stage = self._lifecycle(profile.id, message.message_id or "")
        self.receipts.record(message.message_id or "")
        return result.model_copy(update={"status": "accepted", "customer_id": profile.id,
                                         "stage": stage})

    @staticmethod
    def _checked(traits: dict[str, Any], key: str, check: Callable[[str], Any]) -> str | None:
        value = traits.get(key)
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise Refused([f"traits.{key}: must be text"])
        try:
            checked: str = check(value.strip())
        except ValueError as exc:
            raise Refused([f"traits.{key}: {exc}"]) from None
        return checked

    def _trait_identities(self, traits: dict[str, Any]) -> list[Identity]:
        found = []
        errors = []
        for kind, normal in (("email", normal_email), ("phone", normal_phone)):
            value = traits.get(kind)
            if value in (None, ""):
                continue
            if not isinstance(value, str):
                errors.append(f"traits.{kind}: must be text")
                continue
            try:
                found.append(Identity(kind=kind, value=normal(value)))  # type: ignore[arg-type]
            except InvalidIdentity as exc:
                errors.append(f"traits.{kind}: {exc}")
        if errors:
            raise Refused(errors)
        return found

    @staticmethod
    def _subscription_identities(message: Message) -> list[Identity]:
        found = []
        for i, sub in enumerate(message.context.messaging_subscriptions):
            channel = SUBSCRIPTION_CHANNEL.get(sub.type.upper())
            if channel is None:
                continue  # push and the like: not a channel of ours
            try:
                found.append(Identity(kind="email", value=normal_email(sub.key))
                             if channel == "email"
                             else Identity(kind="phone", value=normal_phone(sub.key)))
            except InvalidIdentity as exc:
                raise Refused([f"context.messaging_subscriptions.{i}.key: {exc}"]) from None
        return found

    def _lifecycle(self, customer_id: str, message_id: str) -> str | None:
        """Try the lifecycle rules on the updated profile (a trait may make a customer)."""
        profile = self.store.get_customer(customer_id)
        if profile is None:  # pragma: no cover - it was just written
            return None
        now = self.clock.now()
        events = self.store.recent_events(customer_id, since=now - TRIGGER_LOOKBACK, limit=500)
        stage, rule = self.lifecycle.next_stage(profile, None, events, now)
        if rule is None:
            return None
        self.store.apply_profile_change(customer_id, CrmChange(stage=stage), [Activity(
            id=self.store.ids("act"), kind="stage_change",
            body={"from": profile.lifecycle_stage, "to": stage, "rule": rule,
                  "segment_message_id": message_id})])
        return stage

    # --- consent ----------------------------------------------------------------------------

    def _consent(self, message: Message, by: str, at: datetime) -> list[CrmChange]:
        """The consent the message states, one change per place it states it (so each ledger
        row names its evidence); the later places win (a general withdrawal last)."""
        stated: list[tuple[str, dict[Channel, dict[str, Any]]]] = []
        subscribed: dict[Channel, dict[str, Any]] = {}
        for sub in message.context.messaging_subscriptions:
            channel = SUBSCRIPTION_CHANNEL.get(sub.type.upper())
            if channel is not None and sub.status != "DID_NOT_SUBSCRIBE":
                subscribed[channel] = {"marketing": "granted" if sub.status == "SUBSCRIBED"
                                       else "revoked"}
        stated.append(("context.messaging_subscriptions", subscribed))
        traits = {**message.context.traits,
                  **(message.traits if isinstance(message, Identify) else {})}
        if traits.get("unsubscribed") is True:
            stated.append(("traits.unsubscribed", {"email": {"marketing": "revoked"}}))
        preferences = message.context.consent.category_preferences \
            if message.context.consent else {}
        specific: dict[Channel, dict[str, Any]] = {}
        general: dict[Channel, dict[str, Any]] = {}
        for category, allowed in preferences.items():
            name = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_") \
                .removesuffix("_marketing")
            if name in CHANNELS:
                specific[name] = {"marketing": "granted" if allowed else "revoked"}  # type: ignore[index]
            elif name == "marketing" and not allowed:
                general = {channel: {"marketing": "revoked"} for channel in CHANNELS}
        stated.append(("context.consent.categoryPreferences", specific))
        stated.append(("context.consent.categoryPreferences.marketing", general))
        return [
            CrmChange(consent=consent, consent_source="segment", consent_by=by,  # type: ignore[arg-type]
                      consent_at=at,
                      consent_evidence=f"messageId {message.message_id}: {where}")
            for where, consent in stated if consent
        ]

    # --- alias: two ids, one person ---------------------------------------------------------

    def _alias(self, result: ItemResult, message: Alias, by: str) -> ItemResult:
        user = Identity(kind="external_id", value=message.user_id)
        previous = [Identity(kind="external_id", value=message.previous_id),
                    Identity(kind="anonymous_id", value=message.previous_id)]
        if self.receipts.seen(message.message_id or ""):
            known = self.store.find_customer(user)
            return result.model_copy(update={"status": "duplicate",
                                             "customer_id": known.id if known else None})
        old = next((p for i in previous if (p := self.store.find_customer(i))), None)
        new = self.store.find_customer(user)
        if old is not None and new is not None and old.id != new.id:
            self.store.merge_customers(
                new.id, old.id, by=by, stages=self.lifecycle.stages,
                reason=f"segment alias: {message.previous_id} is {message.user_id} "
                       f"(messageId {message.message_id})")
            customer_id = new.id
        else:
            held = next((i for i in previous if old is not None and any(
                (i.kind, i.value) == (j.kind, j.value) for j in old.identities)), previous[1])
            profile, _ = self.store.resolve_customer(
                [user, held], self.lifecycle.default_stage, timezone="",
                stages=self.lifecycle.stages)
            customer_id = profile.id
        self.receipts.record(message.message_id or "")
        return result.model_copy(update={"status": "accepted", "customer_id": customer_id})
