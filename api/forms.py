"""Reading a multipart/form-data body's text fields (the email webhook's, the edge guard's)."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser


def multipart_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """(name, text) of each text field of a multipart/form-data body, in order; files are
    left out, an unknown charset is read as UTF-8."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return []
    fields = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename():
            continue
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        try:
            text = raw.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:
            text = raw.decode("utf-8", "replace")
        fields.append((name, text))
    return fields
