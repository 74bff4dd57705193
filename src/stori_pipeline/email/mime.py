"""The MIME message SES sends raw (SPEC §6): text, HTML and the inline logo.

Structure (what Gmail, Outlook and Apple Mail all display well)::

    multipart/alternative
    ├── text/plain                      the plain-text part
    └── multipart/related
        ├── text/html                   references the logo as cid:...
        └── image/png (inline)          Content-ID: <stori-logo@stori-pipeline>

Headers are built with the stdlib's header registry under ``email.policy.SMTP``: the display
name goes through :class:`email.headerregistry.Address` (RFC 2047-encoded when it is not
ASCII), and every value that comes from data is stripped of control characters first, so no
data field can inject a header. (Absolute imports: ``email`` here is the standard library.)
"""

from __future__ import annotations

import email.policy
import email.utils
from email.headerregistry import Address
from email.message import EmailMessage

from stori_pipeline.email.render import RenderedEmail, clean_display_name

__all__ = ["build_mime", "parse_sender"]


def _single_line(value: str) -> str:
    return clean_display_name(value) if value else ""


def parse_sender(sender: str) -> Address:
    """``"Stori <no-reply@example.com>"`` or a bare address -> an :class:`Address`.

    Raises:
        ValueError: The sender is not one well-formed address.
    """
    if any(ch in sender for ch in "\r\n"):
        raise ValueError("the sender must be a single line")
    name, addr = email.utils.parseaddr(sender)
    if not addr or "@" not in addr:
        raise ValueError(f"not an email address: {sender!r}")
    return Address(display_name=_single_line(name), addr_spec=addr)


def build_mime(
    rendered: RenderedEmail, *, sender: Address, recipient_email: str, recipient_name: str = ""
) -> bytes:
    """The raw RFC 5322 message (CRLF line endings) for SES ``SendEmail`` with Raw content.

    ``recipient_email`` must already be validated (the recipients module does that);
    ``recipient_name`` is any text and is cleaned here.
    """
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = _single_line(rendered.subject)
    message["From"] = sender
    message["To"] = Address(
        display_name=_single_line(recipient_name), addr_spec=_single_line(recipient_email)
    )
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["MIME-Version"] = "1.0"

    # Quoted-printable keeps the message 7-bit clean whatever the content (8bit is chosen
    # otherwise for short non-ASCII parts, which not every relay accepts).
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    html_part = next(p for p in message.iter_parts() if p.get_content_type() == "text/html")
    for image in rendered.inline_images:
        html_part.add_related(
            image.content,
            maintype=image.maintype,
            subtype=image.subtype,
            cid=f"<{image.cid}>",
            disposition="inline",
            filename=image.filename,
        )
    return message.as_bytes(policy=email.policy.SMTP)
