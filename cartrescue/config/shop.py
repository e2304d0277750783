"""The ``shop`` section: who the messages come from (also the template context's ``shop``).

Apart from the other sections as the one that describes the sender; the Feedback-ID's field
rules live here, beside the ``shop.feedback_id`` they check.
"""

import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationInfo, field_validator

from cartrescue.config.types import (
    EmailAddress,
    OptionalEmail,
    country_code,
    currency_code,
    http_link,
    iana_zone,
    Model,
    norway,
)


class ShopConfig(Model):
    """Who the messages come from; also the template context's ``shop``."""

    name: str = "Example Shop"
    url: str = "https://shop.example.com"
    timezone: str = "UTC"
    default_locale: str = "en"
    from_email: EmailAddress = "shop@example.com"
    from_name: str | None = None
    reply_to: OptionalEmail = None
    reply_to_name: str | None = None  # the Reply-To's display name ("Example Shop Support")
    support_email: OptionalEmail = None
    support_phone: str | None = None
    address: str = ""
    returns: str = ""
    logo_url: str | None = None
    # ISO 3166-1 country code (SE, HU, KZ): the region of phone numbers written without +country
    # code (the SMS channel normalizes every number to E.164; sms.default_region overrides it).
    country: str | None = None
    unsubscribe_url: str = "https://shop.example.com/unsubscribe?token={token}"
    unsubscribe_mailto: OptionalEmail = None  # e.g. unsubscribe@shop.example.com (List-Unsubscribe)
    unsubscribe_secret: str = ""  # HMAC key for unsubscribe tokens: use ${CARTRESCUE_SECRET}
    # Gmail's Feedback-ID sender id (Postmaster Tools' spam rate per sequence step and tier); None: no header.
    feedback_id: str | None = None
    # The base currency thresholds and reports are in (None: amounts are compared as they are).
    currency: str | None = None
    # Units of the base currency per unit of another currency, for sources that do not give a
    # base amount themselves (CSV): {SEK: 0.087, USD: 0.92}.
    exchange_rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str | None) -> str | None:
        return currency_code(value, f"expected an ISO 4217 code like EUR, got {value!r}") if value else None

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        """A CLDR locale (``sv-SE`` is written ``sv_SE``): a typo would otherwise give every cart
        without a locale English, silently."""
        from babel.localedata import exists

        from cartrescue.sources.values import normalize_locale

        locale = normalize_locale(value)
        if locale is None or not exists(locale):
            raise ValueError(f"unknown locale {value!r}: expected a CLDR locale like en, sv or pt_BR")
        return locale

    @field_validator("country", mode="before")
    @classmethod
    def _not_false(cls, value: Any) -> Any:
        return norway(value)

    @field_validator("default_locale", mode="before")
    @classmethod
    def _norwegian(cls, value: Any) -> Any:
        """An unquoted ``no`` (Norwegian), which YAML 1.1 reads as false."""
        return norway(value, "no")

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str | None) -> str | None:
        return country_code(value)

    @field_validator("exchange_rates")
    @classmethod
    def _positive_rates(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        checked: dict[str, Decimal] = {}
        for code, rate in rates.items():
            key = currency_code(code, f"{code}: expected an ISO 4217 code like SEK as the key")
            if not rate > 0:
                raise ValueError(f"{code}: the rate must be above 0, got {rate}")
            checked[key] = rate
        return checked

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return iana_zone(value)

    @field_validator("unsubscribe_url")
    @classmethod
    def _has_token(cls, value: str) -> str:
        """An http(s) link a mail client can use as written: it goes into the List-Unsubscribe
        header, where a space or a non-ASCII letter made the whole header an encoded word that
        no client reads as a link."""
        if "{token}" not in value:
            raise ValueError("must contain {token}, where the signed unsubscribe token goes")
        token_reaches_server(value)
        from cartrescue.compose.links import safe_url

        if safe_url(value) != value:
            raise ValueError(f"expected an http(s) link like https://shop.example.com/unsubscribe?token={{token}}, "
                             f"got {value!r}")
        outside = value.replace("{token}", "")
        # RFC 3986 has no place for '<>"{}|\^`' in a link (a '>' also ends the header's <link>);
        # "=?" would make the header read as an RFC 2047 encoded word.
        bad = next((c for c in outside if c.isspace() or not (c.isascii() and c.isprintable())
                    or c in '<>"{}|\\^`'), None)
        if bad is None and "=?" in outside:
            bad = "=?"
        if bad is not None:
            raise ValueError(f"{bad!r} cannot stand in a link as written: percent-encode it "
                             f"(a space is %20; é is %C3%A9; < is %3C), got {value!r}")
        return value

    @property
    def one_click(self) -> bool:
        """Can messages offer RFC 8058 one-click unsubscribing (``List-Unsubscribe-Post``)? Only
        for an https link, as that RFC requires."""
        return self.unsubscribe_url[:8].lower() == "https://"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def domain(self) -> str:
        """The sender's domain as it goes on the wire: in its IDNA form, since a Message-ID is
        ASCII (``bücher.example`` made every message fail to build)."""
        from cartrescue.contacts import ascii_domain

        domain = self.from_email.rpartition("@")[2]
        return ascii_domain(domain) or domain

    @field_validator("url", "logo_url")
    @classmethod
    def _links(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Links every message carries: ``url: shop.example.com`` (no ``https://``) was a relative
        href no mail client opens, and a cart without its own recovery link had none back;
        ``logo_url: logo.png`` a broken image in every message."""
        example = "https://shop.example.com" + ("/logo.png" if info.field_name == "logo_url" else "")
        if value is None or (not value and info.field_name == "logo_url"):  # an empty logo: none
            return value
        return http_link(value, example)

    @field_validator("feedback_id")
    @classmethod
    def _feedback_sender(cls, value: str | None) -> str | None:
        """The last field of ``Feedback-ID: a:b:c:SenderId``: a colon or a space would shift or
        break the fields Gmail counts by, so the id is a short plain token."""
        if value is not None and not _FEEDBACK_ID.fullmatch(value):
            raise ValueError(f"expected a short id of letters, digits, '.', '_' or '-' (up to 40), like "
                             f"myshop, got {value!r}")
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _ascii_mailbox(cls, value: str | None) -> str | None:
        """A List-Unsubscribe header is structured (RFC 2369): no encoded words, so its mailto
        must be ASCII; the domain goes in its IDNA form (:func:`mime.encode_address`)."""
        if value is not None and not value.rpartition("@")[0].isascii():
            raise ValueError(f"{value!r}: the part before @ must be ASCII (a List-Unsubscribe header cannot "
                             "carry other letters, and mail clients would show no unsubscribe at all)")
        return value


def token_reaches_server(url: str) -> None:
    """Refuse a link whose ``{token}`` stands only where :mod:`cartrescue.webhook` never sees it:
    after ``#`` (browsers and one-click POSTs do not send the fragment) or in the host name.
    Every message would carry it and every click be refused."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if "{token}" not in parts.path + parts.query:
        where = "after #" if "{token}" in parts.fragment else "in the host name"
        raise ValueError(f"{{token}} stands {where}, which is never sent to the web server: put it in the path "
                         f"or the query, like https://shop.example.com/unsubscribe?token={{token}}; got {url!r}")


#: What a field of a Feedback-ID may hold (its fields are colon-separated): the configured sender
#: id is refused otherwise, and a tier's or sequence's name in it has the rest made dashes.
_FEEDBACK_ID = re.compile(r"[A-Za-z0-9._-]{1,40}")


_NOT_FEEDBACK = re.compile(r"[^A-Za-z0-9._-]")


def feedback_field(name: str) -> str:
    """A config name as one field of a Feedback-ID: its colons (the separator), spaces and other
    characters made dashes."""
    return _NOT_FEEDBACK.sub("-", name)
