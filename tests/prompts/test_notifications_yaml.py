"""The transactional templates are data (``prompts/notifications.yaml``): checked on load with
line numbers, placeholders are plain declared names, variables are typed, an invalid edit is
refused and the last valid templates stay in force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.errors import Invalid
from policy.notifications import (
    NotificationsError,
    NotificationTemplatesProvider,
    Template,
    check_variables,
    load_notifications,
    parse_notifications,
)

SAMPLES: dict[str, Any] = {
    "string": "A-10042", "integer": 30, "number": 12.5, "date": "2026-11-05",
    "datetime": "2026-11-05T10:00:00Z", "url": "https://acme.example/x", "email": "a@b.example",
}


def _render(template: Template, values: dict[str, str]) -> str:
    text, subject = template.render({**values, "first_name": "Dana", "company": "Acme"})
    assert subject is None or ("{" not in subject and "\n" not in subject)
    return text


def test_every_shipped_template_renders_from_typed_values() -> None:
    templates = load_notifications().templates
    assert {"order_shipped", "password_reset", "invoice_ready"} <= set(templates)
    for name, template in templates.items():
        given = {var: SAMPLES[spec.type] for var, spec in template.variables.items()}
        text = _render(template, check_variables(name, template, given))
        assert "{" not in text and "}" not in text, name
        assert text.startswith("Hi Dana, "), name
        assert template.purpose in ("transactional", "service")
        if "email" in template.channels:
            assert template.subject, name


def test_an_invalid_file_is_refused_naming_each_line() -> None:
    text = """templates:
  a:
    channels: [sms]
    body: hi {name.__class__}
  b:
    channels: [sms]
    body: |
      Hi {first_name}, {order} {ordr}
    variables:
      order: string
      unused: string
  c:
    channels: [email]
    body: "{x}"
    variables: {x: string}
  d:
    channels: [sms, sms]
    body: "{when:%Y} {x!r}"
  e:
    channels: [fax]
    body: hi
    variables: {company: string, x: strin}
"""
    with pytest.raises(NotificationsError) as caught:
        parse_notifications(text, "n.yaml")
    problems = [str(p) for p in caught.value.problems]
    assert problems == [
        "line 4: templates.a.body: placeholder {name.__class__} is not a plain name",
        "line 7: templates.b.body: {ordr} is neither a declared variable nor one of "
        "first_name, company",
        "line 11: templates.b.variables.unused: declared but used nowhere",
        "line 13: templates.c.channels: email needs a subject",
        "line 17: templates.d.channels: Value error, a channel is listed twice",
        "line 20: templates.e.channels.0: Input should be 'web_chat', 'email', 'sms' or "
        "'whatsapp'",
        "line 22: templates.e.variables.x.type: Input should be 'string', 'integer', 'number', "
        "'date', 'datetime', 'url' or 'email'",
    ]
    assert str(caught.value).startswith("n.yaml: invalid notifications")


def test_a_repeated_key_is_refused() -> None:
    text = "templates:\n  a: {channels: [sms], body: hi}\n  a: {channels: [sms], body: ho}\n"
    with pytest.raises(NotificationsError, match="line 3: duplicate key 'a'"):
        parse_notifications(text)


def test_variables_are_typed_strictly() -> None:
    template = parse_notifications("""templates:
  t:
    channels: [sms]
    body: "{n} {d} {u} {e} {opt}"
    variables:
      n: integer
      d: date
      u: url
      e: email
      opt: {type: string, required: false, max_length: 5}
""").templates["t"]
    ok = check_variables("t", template, {"n": 3, "d": "2026-11-05", "u": "https://x.example/a b"
                                         .replace(" ", ""), "e": "Dana@Example.com"})
    assert ok == {"n": "3", "d": "2026-11-05", "u": "https://x.example/ab",
                  "e": "dana@example.com"}
    with pytest.raises(Invalid) as caught:
        check_variables("t", template, {"n": True, "d": "2026-13-40", "u": "file:///etc/passwd",
                                        "e": "x@@y", "opt": "too long"})
    detail = caught.value.detail
    for where in ("variables.n:", "variables.d:", "variables.u: must be an http or https URL",
                  "variables.e:", "variables.opt: String should have at most 5 characters"):
        assert where in detail
    with pytest.raises(Invalid, match=r"variables\.n: Input should be a valid integer"):
        check_variables("t", template, {"n": "3", "d": "2026-11-05", "u": "https://x.example",
                                        "e": "a@b.example"})


def test_an_invalid_edit_is_refused_and_the_last_templates_stay(tmp_path: Path) -> None:
    path = tmp_path / "notifications.yaml"
    path.write_text("templates:\n  hello: {channels: [sms], body: 'Hi {first_name}'}\n",
                    encoding="utf-8")
    provider = NotificationTemplatesProvider(path)
    first = provider.get()
    path.write_text("templates:\n  hello: {channels: [sms], body: 'Hi {nme}'}\n",
                    encoding="utf-8")
    with pytest.raises(NotificationsError, match=r"line 2: templates\.hello\.body"):
        provider.reload()
    assert provider.get() is first
    assert provider.last_error is not None
    path.write_text("templates:\n  bye: {channels: [sms], body: 'Bye {first_name}'}\n",
                    encoding="utf-8")
    assert set(provider.reload().templates) == {"bye"}
    assert provider.last_error is None
