"""``report --email``: the weekly digest, sent through the configured SMTP relay.

Owns composing the digest (the plain-text summary as the body, a short HTML version, the full
HTML report attached) and handing it to the relay with the SMTP channel's own connection code
(:func:`cartrescue.channels.smtp.open_connection`: TLS, AUTH and timeouts as ``run --send``).
It never uses smtplib, and sends exactly one message, to the address given on the command line.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timezone
from html import escape
from typing import Any

from cartrescue.compose.mime import build_with_attachments, needs_smtputf8, wire_address
from cartrescue.config import Config
from cartrescue.errors import CartrescueError
from cartrescue.model import Address, Attachment, OutgoingMessage
from cartrescue.report.files import digest


class MailError(CartrescueError):
    """The digest could not be delivered (the report itself is fine)."""


def compose(config: Config, document: dict[str, Any], page: str, to: str, now: datetime) -> OutgoingMessage:
    shop = config.shop
    text = digest(document, shop.name, shop.default_locale)
    period = document["period"]
    stamp = hashlib.blake2b(f"{to}|{period['since']}|{period['until']}|{now.isoformat()}".encode(),
                            digest_size=8).hexdigest()
    html = ("<!DOCTYPE html><html lang=\"en\"><body style=\"font-family:Arial,Helvetica,sans-serif;color:#111827\">"
            + "".join(f"<p>{escape(line)}</p>" for line in text.strip().split("\n") if line)
            + "</body></html>")
    return OutgoingMessage(
        message_id=f"<cr.report.{stamp}@{shop.domain}>",
        sender=Address(shop.from_email, shop.from_name or shop.name),
        to=Address(to),
        subject=f"{shop.name}: cart reminders {period['first_day']} to {period['last_day']}",
        text=text, html=html, date=now,
        headers=(("Auto-Submitted", "auto-generated"),),
    )


def send_report(config: Config, document: dict[str, Any], page: str, to: str) -> dict[str, Any]:
    """Send the digest with ``page`` attached to ``to``; return what the relay said."""
    from cartrescue.channels.smtp import ConnectFailure, SmtpSettings, open_connection, scrubbed, tls_context

    config.require_env("smtp")  # the secret as given, never its ${NAME} placeholder
    now = datetime.now(timezone.utc)
    message = compose(config, document, page, to, now)
    name = f"cartrescue-report-{document['period']['last_day']}.html"
    data = build_with_attachments(message, [Attachment(name, "text/html", page.encode("utf-8"))])
    settings = SmtpSettings.from_config(config)
    sender, rcpt = wire_address(settings.envelope_from), wire_address(to)
    options = ["SMTPUTF8"] if needs_smtputf8(to) or needs_smtputf8(settings.envelope_from) else []

    async def deliver() -> str:
        import aiosmtplib

        context = tls_context(settings) if settings.security != "none" else None
        smtp = await open_connection(settings, context)
        try:
            if options and not smtp.supports_extension("smtputf8"):
                raise MailError(f"--email {to}: not sent: the relay does not offer SMTPUTF8, which this address "
                                f"needs (RFC 6531: a non-ASCII local part); give an ASCII address")
            _refused, reply = await smtp.sendmail(sender, [rcpt], data, mail_options=options)
            return reply
        finally:
            try:
                await asyncio.wait_for(smtp.quit(), timeout=5)
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                smtp.close()

    try:
        reply = asyncio.run(asyncio.wait_for(deliver(), timeout=settings.timeout * 4))
    except ConnectFailure as failure:
        raise MailError(f"--email: {failure.reply}") from None
    except MailError:
        raise
    except Exception as exc:  # aiosmtplib's refusals (SMTPRecipientRefused, ...), timeouts, lost connections
        raise MailError(f"--email {to}: not sent: {type(exc).__name__}: {scrubbed(str(exc), settings, 300)}") from None
    return {"to": to, "reply": scrubbed(str(reply), settings, 300), "attachment": name, "bytes": len(data)}
