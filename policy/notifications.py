"""Transactional message templates as data (``prompts/notifications.yaml``, or
``JOURNEY_NOTIFICATIONS_PATH``): each names its purpose, the channels it may go out on, an email
subject and a body with placeholders, and the typed variables a caller must give. The file is
validated with line-numbered errors and hot-reloaded; a placeholder that is not a plain name, a
variable the body does not use or an email channel without a subject is refused.
:func:`check_variables` types a request's variables against its template
(``journey.notifications`` sends it).
"""

from __future__ import annotations

import hashlib
import re
import string
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.domain import (
    Channel,
)
from core.errors import Invalid
from core.identity import EmailAddress
from prompts import render as fill
from prompts.reloading import ReloadingFile
from prompts.yamlcheck import YamlInvalid, read_source, validate_yaml

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "notifications.yaml"
#: Filled in from the profile and the company, never by the caller.
BUILT_INS = ("first_name", "company")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_SUBJECT = 200

VarType = Literal["string", "integer", "number", "date", "datetime", "url", "email"]


class NotificationsError(YamlInvalid):
    kind = "notifications"


# --- templates as data ---------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Variable(Strict):
    """A value the caller fills in."""

    type: VarType = "string"
    required: bool = True
    #: the longest string (type string)
    max_length: int = Field(200, ge=1, le=2000)
    description: str = ""


def _variable(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


#: A variable in full, or its type alone (``order_id: string``).
VariableSpec = Annotated[Variable, BeforeValidator(_variable)]


class Template(Strict):
    description: str = ""
    purpose: Literal["transactional", "service"] = "transactional"
    #: where its text may go; the first is the default
    channels: list[Channel] = Field(min_length=1)
    subject: str | None = Field(None, min_length=1, max_length=MAX_SUBJECT)
    body: str = Field(min_length=1, max_length=4000)
    variables: dict[str, VariableSpec] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    @field_validator("variables")
    @classmethod
    def _names(cls, value: dict[str, Variable]) -> dict[str, Variable]:
        for name in value:
            if not NAME.match(name):
                raise ValueError(f"{name!r}: a variable name is lowercase letters, digits and _")
            if name in BUILT_INS:
                raise ValueError(f"{name!r} is filled in from the profile; do not declare it")
        return value

    @model_validator(mode="after")
    def _placeholders(self) -> Template:
        problems: list[InitErrorDetails] = []
        used: set[str] = set()
        for part in ("subject", "body"):
            text = getattr(self, part)
            if text is None:
                continue
            try:
                fields = _fields(text)
            except ValueError as exc:
                problems.append(_problem((part,), str(exc), text))
                continue
            for name in fields:
                if name not in self.variables and name not in BUILT_INS:
                    problems.append(_problem(
                        (part,), f"{{{name}}} is neither a declared variable nor one of "
                        f"{', '.join(BUILT_INS)}", text))
            used |= set(fields)
        for name in self.variables.keys() - used:
            problems.append(_problem(("variables", name), "declared but used nowhere", name))
        if "email" in self.channels and self.subject is None:
            problems.append(_problem(("channels",), "email needs a subject", self.channels))
        if problems:
            raise ValidationError.from_exception_data("Template", problems)
        return self

    def render(self, values: dict[str, str]) -> tuple[str, str | None]:
        """The body and the subject (one line) filled in with ``values`` (every placeholder's
        value; more is ignored)."""
        body = fill(self.body, **{k: values[k] for k in _fields(self.body)})
        if self.subject is None:
            return body, None
        subject = fill(self.subject, **{k: values[k] for k in _fields(self.subject)})
        return body, " ".join(subject.split())[:MAX_SUBJECT]


def _problem(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc,
                            input=value)


def _fields(text: str) -> list[str]:
    """The placeholders of ``text``; only plain names (no attribute access, no indexing, no
    conversion or format spec), so rendering runs no code of the template's."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from None
    names = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not NAME.match(field) or spec or conversion:
            raise ValueError(f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain name")
        names.append(field)
    return names


class NotificationTemplates(Strict):
    templates: dict[str, Template]
    version: str = ""

    @field_validator("templates")
    @classmethod
    def _names(cls, value: dict[str, Template]) -> dict[str, Template]:
        bad = [n for n in value if not NAME.match(n)]
        if bad:
            raise ValueError(f"template names are lowercase letters, digits and _: {bad}")
        return value


def parse_notifications(text: str, source: str = "<notifications>") -> NotificationTemplates:
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return validate_yaml(text, NotificationTemplates, source, error=NotificationsError,
                         extra={"version": version})


def load_notifications(path: Path | None = None) -> NotificationTemplates:
    path = path or DEFAULT_PATH
    return parse_notifications(read_source(path, NotificationsError), str(path))


class NotificationTemplatesProvider(ReloadingFile[NotificationTemplates]):
    """The templates in force, re-read when the file changes; an invalid edit is refused
    (``last_error``) and the last valid version stays in force."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path or DEFAULT_PATH, load_notifications, lambda t: t.version)


# --- typed variables -------------------------------------------------------------------------


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(
            c.isspace() for c in value):
        raise ValueError("must be an http or https URL")
    return value


_TYPES: dict[VarType, Any] = {
    "integer": Annotated[int, Field(strict=True)],
    "number": Annotated[float, Field(allow_inf_nan=False)],
    "date": date,
    "datetime": AwareDatetime,
    "url": Annotated[str, StringConstraints(max_length=2000), AfterValidator(_url)],
    "email": EmailAddress,
}


def _python_type(spec: Variable) -> Any:
    if spec.type == "string":
        return Annotated[str, StringConstraints(min_length=1, max_length=spec.max_length)]
    return _TYPES[spec.type]


def _text(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def check_variables(name: str, template: Template, given: dict[str, Any]) -> dict[str, str]:
    """The template's variables from ``given``, typed, as text; :class:`Invalid` naming every
    wrong one (``variables.order_id: required by template order_shipped``)."""
    fields: dict[str, Any] = {
        var: (_python_type(spec) if spec.required else _python_type(spec) | None,
              ... if spec.required else None)
        for var, spec in template.variables.items()
    }
    model = create_model(  # type: ignore[call-overload]
        f"Variables_{name}", __config__=ConfigDict(extra="forbid"), **fields)
    try:
        values = model.model_validate(given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in ("variables", *err["loc"]))
            if err["type"] == "missing":
                problems.append(f"{where}: required by template {name}")
            elif err["type"] == "extra_forbidden":
                problems.append(f"{where}: not a variable of template {name} (it has: "
                                f"{', '.join(sorted(template.variables)) or 'none'})")
            else:
                problems.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
        raise Invalid("; ".join(problems)) from None
    return {k: _text(v) for k, v in values.model_dump().items() if v is not None}
