"""Customers in bulk: read an import file (CSV or JSON Lines), validate each row with the
profile API's own model, apply the good rows in batches, report the refused ones; write every
live profile back out in the same format.

A JSON Lines row is the body of ``PUT /v1/customers`` (:class:`journey.customers.ProfileRequest`).
A CSV row is the same thing flattened into columns (:data:`CSV_HELP`). Each row means what the
same request to the API would mean (``CustomerService.upsert``); the rows are applied set-based
(``memory.bulk``), a batch per transaction, and a row whose identities join two profiles goes
through the API's own path, which merges them. Consent given without a source is recorded with
the source ``import``; ``by`` is the person importing.

The export writes what the import reads: exporting a database and importing the file into an
empty one gives the same profiles (ids and timestamps aside).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import ValidationError

from core.clock import utc
from core.domain import CHANNELS, Channel, Identity
from core.effects import CrmChange
from core.errors import DomainError, IdentityErased, Invalid
from journey.customers import ConsentGiven, CustomerService, ProfileRequest, PurposeConsent
from memory.bulk import BulkRow, ExportedProfile
from memory.store import Store

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
PURPOSES = ("service", "marketing")
IDENTITY_COLUMNS = ("email", "phone", "web_chat_id", "crm_id", "external_id")
PROFILE_COLUMNS = ("name", "locale", "timezone", "lifecycle_stage", "channel_preference")
CONSENT_DETAILS = ("source", "at", "evidence")
#: the consent source of a row that does not name one
IMPORT_SOURCE = "import"

CSV_HELP = """\
CSV columns (a header row names them; any order; an empty cell means "not given"):
  email, phone, web_chat_id, crm_id, external_id   identities (at least one per row)
  name, locale, timezone, lifecycle_stage, channel_preference, force
  consent.<channel>.<purpose>            granted | revoked  (channel: web_chat, email, sms,
                                         whatsapp; purpose: service, marketing)
  consent.<channel>.<purpose>.source     where it was given (default: import)
  consent.<channel>.<purpose>.at         when (ISO 8601 with a timezone)
  consent.<channel>.<purpose>.evidence   e.g. the form's URL, a ticket id
  attr.<name>                            an attribute; a cell that is valid JSON (42, true,
                                         [1, 2], "007") is read as JSON, any other as text"""


@dataclass(frozen=True)
class Refusal:
    """Why a row was not imported: the row (the file's line; a CSV's header is row 1), the
    field (as the API names it; None for the row as a whole) and the message."""

    row: int
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field + ': ' if self.field else ''}{self.message}"

    def as_json(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: rows whose identities joined two or more profiles (merged, then updated)
    merged: int = 0
    #: rows refused (one row may have several refusals)
    refused: int = 0
    #: consent ledger rows the import added
    ledger_rows: int = 0


# --- reading ----------------------------------------------------------------------------------


def guess_format(path: Path) -> Format:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix == "csv":
        return "csv"
    raise Invalid(f"{path.name}: cannot tell the format from the name; give --format csv or "
                  "--format jsonl")


def count_rows(path: Path, fmt: Format) -> int:
    """About how many rows ``path`` holds (its lines, less a CSV's header): a progress total."""
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"
    return max(lines - (fmt == "csv"), 0)


def read_rows(f: TextIO, fmt: Format) -> Iterator[tuple[int, Any]]:
    """(row number, the row as a ``PUT /v1/customers`` body, or a :class:`Refusal`)."""
    return read_csv(f) if fmt == "csv" else read_jsonl(f)


def read_jsonl(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            yield number, Refusal(number, None, f"not JSON: {exc}")


def csv_header_problems(header: list[str]) -> list[str]:
    """What is wrong with a CSV header (unknown or repeated columns), for the whole file."""
    problems = [f"column {name!r} appears twice" for name in sorted(set(header))
                if header.count(name) > 1]
    for name in header:
        if name in IDENTITY_COLUMNS or name in PROFILE_COLUMNS or name == "force":
            continue
        if name.startswith("attr.") and len(name) > 5:
            continue
        parts = name.split(".")
        if parts[0] == "consent" and len(parts) in (3, 4) and parts[1] in CHANNELS \
                and parts[2] in PURPOSES and (len(parts) == 3 or parts[3] in CONSENT_DETAILS):
            continue
        problems.append(f"unknown column {name!r}")
    if not any(name in IDENTITY_COLUMNS for name in header):
        problems.append("no identity column (" + ", ".join(IDENTITY_COLUMNS) + ")")
    return problems


def read_csv(f: TextIO) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(f)
    header = [name.strip() for name in next(reader, [])]
    problems = csv_header_problems(header)
    if problems:
        raise Invalid("the CSV header: " + "; ".join(problems) + "\n" + CSV_HELP)
    number = reader.line_num
    for cells in reader:
        number, start = reader.line_num, number + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            yield start, Refusal(start, None, f"{len(cells)} cells for {len(header)} columns")
            continue
        yield start, csv_body(dict(zip(header, cells, strict=False)))


def csv_body(cells: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the body of ``PUT /v1/customers`` (empty cells left out)."""
    body: dict[str, Any] = {}
    for name, cell in cells.items():
        if cell == "":
            continue
        if name in IDENTITY_COLUMNS:
            body.setdefault("identities", {})[name] = cell
        elif name.startswith("attr."):
            body.setdefault("attributes", {})[name[5:]] = cell_value(cell)
        elif name.startswith("consent."):
            _, channel, purpose, *detail = name.split(".")
            given = body.setdefault("consent", {}).setdefault(channel, {}) \
                .setdefault(purpose, {})
            given[detail[0] if detail else "status"] = cell
        else:
            body[name] = cell
    body.setdefault("identities", {})
    return body


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def cell_value(cell: str) -> Any:
    """An attribute cell: its JSON value when it is JSON (not NaN or Infinity), else the text."""
    try:
        return json.loads(cell, parse_constant=_no_constants)
    except ValueError:
        return cell


def cell_text(value: Any) -> str:
    """The cell :func:`cell_value` reads back as ``value``."""
    if isinstance(value, str) and value != "" and cell_value(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


# --- validating -------------------------------------------------------------------------------


def validate(row: int, data: Any, stages: list[str]) -> ProfileRequest | list[Refusal]:
    """The row as the API's model, with ``import`` as the consent source it does not name;
    or why not, field by field."""
    if isinstance(data, Refusal):
        return [data]
    if not isinstance(data, dict):
        return [Refusal(row, None, "a row is an object with identities and the profile's "
                                   "fields (the body of PUT /v1/customers)")]
    try:
        request = ProfileRequest.model_validate(data)
    except ValidationError as exc:
        return [Refusal(row, ".".join(str(p) for p in err["loc"]) or None,
                        str(err["msg"]).removeprefix("Value error, ")) for err in exc.errors()]
    if request.lifecycle_stage is not None and request.lifecycle_stage not in stages:
        return [Refusal(row, "lifecycle_stage", f"{request.lifecycle_stage!r} is not a stage "
                                                f"of the lifecycle ({', '.join(stages)})")]
    return _import_source(request)


def _import_source(request: ProfileRequest) -> ProfileRequest:
    consent: dict[Channel, PurposeConsent] = {}
    changed = False
    for channel, purposes in request.consent.items():
        update: dict[str, ConsentGiven] = {}
        for purpose in PURPOSES:
            given: ConsentGiven | None = getattr(purposes, purpose)
            if given is not None and "source" not in given.model_fields_set:
                update[purpose] = given.model_copy(update={"source": IMPORT_SOURCE})
        consent[channel] = purposes.model_copy(update=update) if update else purposes
        changed = changed or bool(update)
    return request.model_copy(update={"consent": consent}) if changed else request


def bulk_row(request: ProfileRequest, *, by: str) -> BulkRow:
    """The row as ``CustomerService.upsert`` applies it: the stage and attributes, then the
    consent in groups of one source (each ledger row says where it came from)."""
    groups: dict[tuple[str, datetime | None, str | None], dict[Channel, dict[str, Any]]] = {}
    for channel, purposes in request.consent.items():
        for purpose in PURPOSES:
            given: ConsentGiven | None = getattr(purposes, purpose)
            if given is not None:
                key = (given.source, given.at and utc(given.at), given.evidence)
                groups.setdefault(key, {}).setdefault(channel, {})[purpose] = given.status
    changes = [CrmChange(stage=request.lifecycle_stage, fields=request.attributes)] + [
        CrmChange(consent=consent, consent_source=source, consent_by=by,  # type: ignore[arg-type]
                  consent_at=at, consent_evidence=evidence)
        for (source, at, evidence), consent in groups.items()
    ]
    return BulkRow(
        identities=_canonical(request), changes=changes,
        name=request.name, timezone=request.timezone, locale=request.locale,
        channel_preference=request.channel_preference, force=request.force)


def _canonical(request: ProfileRequest) -> list[Identity]:
    """The request's identities in canonical form: the model made the email and phone so
    (``core.identity``); the others are trimmed, as ``memory.profiles.canonical`` does."""
    given = request.identities
    return [Identity(kind=kind, value=value if kind in ("email", "phone")  # type: ignore[arg-type]
                     else value.strip())
            for kind in IDENTITY_COLUMNS if (value := getattr(given, kind)) is not None]


# --- importing --------------------------------------------------------------------------------


class Importer:
    """Apply validated rows in batches (``memory.bulk``); a row that joins two profiles goes
    through ``CustomerService.upsert``, which merges them."""

    def __init__(self, customers: CustomerService, *, by: str, batch_size: int = 1000) -> None:
        if batch_size < 1:
            raise Invalid("batch_size: at least 1")
        self.customers = customers
        self.store = customers.store
        self.lifecycle = customers.lifecycle
        self.by = by
        self.batch_size = batch_size

    def run(
        self,
        rows: Iterable[tuple[int, Any]],
        *,
        on_refusal: Callable[[Refusal], None] = lambda _: None,
        on_row: Callable[[], None] = lambda: None,
    ) -> ImportSummary:
        """Import ``rows`` (from :func:`read_rows`); each refusal goes to ``on_refusal``,
        ``on_row`` is called once per row read."""
        summary = ImportSummary()
        ledger_before = self.store.bulk.ledger_size()
        stages = list(self.lifecycle.stages)
        batch: list[tuple[int, ProfileRequest]] = []
        refused: list[Refusal] = []  # this batch's, reported in row order
        for number, data in rows:
            summary.rows += 1
            checked = validate(number, data, stages)
            if isinstance(checked, list):
                summary.refused += 1
                refused += checked
            else:
                batch.append((number, checked))
                if len(batch) >= self.batch_size:
                    self._flush(batch, summary, refused)
                    batch = []
            if not batch and len(refused) >= self.batch_size:
                self._report(refused, on_refusal)
            on_row()
        self._flush(batch, summary, refused)
        self._report(refused, on_refusal)
        summary.ledger_rows = self.store.bulk.ledger_size() - ledger_before
        return summary

    def _not_erased(self, batch: list[tuple[int, ProfileRequest]],
                    refused: list[Refusal]) -> list[tuple[int, ProfileRequest]]:
        """The rows naming no erased identity (that no live profile holds since): the
        others are refused, as the API refuses them, so the person is not recreated. One
        query for the batch; row by row only when it names one."""
        erasure = self.store.erasure
        if erasure.erased(i for _, request in batch for i in _canonical(request)) is None:
            return batch
        kept = []
        for number, request in batch:
            hit = erasure.erased(_canonical(request))
            if hit is None:
                kept.append((number, request))
            else:
                detail = IdentityErased(hit[0].kind, hit[1]).detail
                refused.append(Refusal(number, f"identities.{hit[0].kind}",
                                       detail.partition(": ")[2]))
        return kept

    @staticmethod
    def _report(refused: list[Refusal], on_refusal: Callable[[Refusal], None]) -> None:
        for refusal in sorted(refused, key=lambda r: r.row):
            on_refusal(refusal)
        refused.clear()

    def _flush(self, batch: list[tuple[int, ProfileRequest]], summary: ImportSummary,
               refused: list[Refusal]) -> None:
        if not batch:
            return
        kept = self._not_erased(batch, refused)
        summary.refused += len(batch) - len(kept)
        batch = kept
        rows = [bulk_row(request, by=self.by) for _, request in batch]
        start = 0
        while start < len(batch):
            result = self.store.bulk.apply(rows[start:], stages=self.lifecycle.stages,
                                           default_stage=self.lifecycle.default_stage)
            for (number, _), outcome in zip(batch[start:], result.outcomes, strict=False):
                if outcome.status == "refused":
                    summary.refused += 1
                    refused.append(Refusal(number, outcome.field, outcome.message or "refused"))
                else:
                    setattr(summary, outcome.status, getattr(summary, outcome.status) + 1)
            start += len(result.outcomes)
            if result.stopped_for_merge:
                number, request = batch[start]
                try:
                    self.customers.upsert(request, by=self.by)
                    summary.merged += 1
                except DomainError as exc:  # a stage that would move back, an erased identity
                    field, _, message = exc.detail.partition(": ")
                    summary.refused += 1
                    refused.append(Refusal(number, field, message) if message
                                   else Refusal(number, None, exc.detail))
                start += 1


# --- exporting --------------------------------------------------------------------------------


def export_bodies(item: ExportedProfile) -> tuple[list[dict[str, Any]], list[Identity]]:
    """A profile as import rows, and the identities they cannot carry. The first row carries
    everything with one identity of each kind; each further identity of a kind (a merge
    leaves two emails) gets a row of its own with an identity of another kind from the first
    row, so the import links it to the same profile. A WhatsApp id (the API has no field for
    it), or a second identity of a profile known by one kind only, cannot be carried."""
    p = item.profile
    first: dict[str, str] = {}
    extra: list[Identity] = []
    left_out: list[Identity] = []
    for identity in p.identities:
        if identity.kind not in IDENTITY_COLUMNS:
            left_out.append(identity)
        elif identity.kind in first:
            extra.append(identity)
        else:
            first[identity.kind] = identity.value
    if not first:
        return [], left_out
    body: dict[str, Any] = {"identities": first}
    if p.name is not None:
        body["name"] = p.name
    for name in ("locale", "timezone"):
        if value := getattr(p, name):
            body[name] = value
    body["lifecycle_stage"] = p.lifecycle_stage
    if p.channel_preference:
        body["channel_preference"] = p.channel_preference
    if p.attributes:
        body["attributes"] = p.attributes
    consent: dict[str, dict[str, Any]] = {}
    for channel, purposes in p.consent.items():
        for purpose in PURPOSES:
            status = purposes.status(purpose)  # type: ignore[arg-type]
            if status not in ("granted", "revoked"):
                continue
            given: dict[str, Any] = {"status": status}
            source = item.consent_sources.get((channel, purpose))
            if source and source["status"] == status:
                given["source"] = source["source"]
                given["at"] = source["at"].isoformat()
                if source["evidence"] is not None:
                    given["evidence"] = source["evidence"]
            consent.setdefault(channel, {})[purpose] = given
    if consent:
        body["consent"] = consent
    rows = [body]
    for identity in extra:
        anchor = next(((k, v) for k, v in first.items() if k != identity.kind), None)
        if anchor is None:
            left_out.append(identity)
        else:
            rows.append({"identities": dict([anchor, (identity.kind, identity.value)])})
    return rows, left_out


def csv_columns(attributes: set[str], consent: set[tuple[str, str]]) -> list[str]:
    columns = [*IDENTITY_COLUMNS, *PROFILE_COLUMNS]
    for channel in CHANNELS:
        for purpose in PURPOSES:
            if (channel, purpose) in consent:
                name = f"consent.{channel}.{purpose}"
                columns += [name] + [f"{name}.{detail}" for detail in CONSENT_DETAILS]
    return columns + [f"attr.{name}" for name in sorted(attributes)]


def csv_cells(body: dict[str, Any]) -> dict[str, str]:
    """An import row (:func:`export_bodies`) as CSV cells; :func:`csv_body` reads it back."""
    cells: dict[str, str] = dict(body["identities"])
    for name in PROFILE_COLUMNS:
        if name in body:
            cells[name] = str(body[name])
    for channel, purposes in body.get("consent", {}).items():
        for purpose, given in purposes.items():
            name = f"consent.{channel}.{purpose}"
            cells[name] = given["status"]
            for detail in CONSENT_DETAILS:
                if detail in given:
                    cells[f"{name}.{detail}"] = given[detail]
    for name, value in body.get("attributes", {}).items():
        cells[f"attr.{name}"] = cell_text(value)
    return cells


@dataclass
class ExportSummary:
    profiles: int = 0
    rows: int = 0
    #: (profile id, the identities no import row can carry)
    left_out: list[tuple[str, list[Identity]]] = field(default_factory=list)


class Exporter:
    """Every live profile in the import's format, a page at a time."""

    def __init__(self, store: Store, page: int = 1000) -> None:
        self.store = store
        self.page = page

    def count(self) -> int:
        return self.store.bulk.count_live()

    def write(self, out: TextIO, fmt: Format, *,
              on_profile: Callable[[], None] = lambda: None) -> ExportSummary:
        """Write to ``out``. A profile with no identity an import can name (only a WhatsApp
        id) is left out, and so are identities no row can carry (:func:`export_bodies`)."""
        writer: csv.DictWriter[str] | None = None
        if fmt == "csv":
            writer = csv.DictWriter(out, csv_columns(*self.store.bulk.export_shape()),
                                    lineterminator="\n")
            writer.writeheader()
        summary = ExportSummary()
        for page in self.store.bulk.export_pages(self.page):
            for item in page:
                bodies, left_out = export_bodies(item)
                summary.profiles += bool(bodies)
                summary.rows += len(bodies)
                if left_out:
                    summary.left_out.append((item.profile.id, left_out))
                for body in bodies:
                    if writer is not None:
                        writer.writerow(csv_cells(body))
                    else:
                        out.write(json.dumps(body, ensure_ascii=False, sort_keys=False) + "\n")
                on_profile()
        return summary
