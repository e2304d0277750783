"""What a message carries besides its template: the ``survey`` links, the ``links`` UTM tags
and the ``experiments`` salt that draws its A/B arm.

Apart from the channels, which deliver a message whatever it carries.
"""

from typing import Any

from pydantic import Field, field_validator, model_validator

from cartrescue.config.shop import token_reaches_server
from cartrescue.config.types import NAME, Model, http_link, norway

DEFAULT_REASONS = ("shipping_cost", "price", "payment", "delivery_time", "just_looking", "other")


class ExperimentsConfig(Model):
    """A/B variants and the holdout: assignment is a stable hash of the address and this salt."""

    salt: str = "cartrescue"  # change it to draw every address's arms anew (ends running tests)


class SurveyConfig(Model):
    """Asking why the cart was left: one-click reasons in the messages, answered on the page the
    WSGI app of :mod:`cartrescue.webhook` serves. See docs/survey.md."""

    url: str | None = None  # the answer page with {token}, e.g. https://shop.example.com/cart-survey?token={token}; None: no survey
    reasons: list[str] = Field(default_factory=lambda: list(DEFAULT_REASONS))
    steps: list[int] | None = None  # the steps whose messages ask (1-based); None: every step
    free_text: bool = True  # the answer page also takes an optional line of text
    stops_sequence: bool = True  # an answered cart gets no more reminders (reason answered_survey)
    words: dict[str, dict[str, str]] = Field(default_factory=dict)  # {locale: {word or reason: text}}

    @field_validator("words", mode="before")
    @classmethod
    def _norwegian(cls, words: Any) -> Any:
        """``no:`` (Norwegian) read by YAML 1.1 as false: the locale it was written as."""
        return {norway(key, "no"): value for key, value in words.items()} if isinstance(words, dict) else words

    @field_validator("url")
    @classmethod
    def _has_token(cls, value: str | None) -> str | None:
        """An http(s) link a mail client opens as written: without ``https://`` every message's
        answer links were relative hrefs and plain text, and a space cut the text part's link."""
        if value is not None and "{token}" not in value:
            raise ValueError("must contain {token}, where the signed survey token goes")
        if value is not None:
            token_reaches_server(value)
            http_link(value, "https://shop.example.com/cart-survey?token={token}")
        return value

    @field_validator("reasons")
    @classmethod
    def _reason_codes(cls, reasons: list[str]) -> list[str]:
        if not 1 <= len(reasons) <= 10:
            raise ValueError("give between 1 and 10 reasons")
        if len(set(reasons)) != len(reasons):
            raise ValueError(f"reasons must be unique, got {reasons}")
        for code in reasons:
            if not NAME.match(code):
                raise ValueError(f"reason codes are short lower-case names like shipping_cost; got {code!r}")
        return reasons

    @field_validator("steps")
    @classmethod
    def _positive_steps(cls, steps: list[int] | None) -> list[int] | None:
        if steps is not None and any(step < 1 for step in steps):
            raise ValueError("steps are numbered from 1")
        return steps

    @model_validator(mode="after")
    def _every_reason_has_words(self) -> "SurveyConfig":
        from cartrescue.survey_words import WORD_KEYS, WORDS

        for locale, words in self.words.items():
            unknown = sorted(set(words) - set(WORD_KEYS) - set(self.reasons))
            if unknown:
                raise ValueError(f"words.{locale}.{unknown[0]}: neither a reason of this survey nor one of "
                                 f"{', '.join(WORD_KEYS)}")
        for code in self.reasons:
            if code not in WORDS["en"] and not any(code in words for words in self.words.values()):
                raise ValueError(f"reason {code!r} needs its label in words (e.g. words: {{en: {{{code}: ...}}}})")
        return self

    def asks_in(self, step: int) -> bool:
        """Do messages of ``step`` carry the survey links?"""
        return self.url is not None and (self.steps is None or step in self.steps)


_UTM_FIELDS = frozenset({"sequence", "step", "variant", "tier", "channel"})


class LinksConfig(Model):
    """UTM parameters on every link of a message (cartrescue.compose.links); placeholders {sequence},
    {step}, {variant}, {tier}, {channel}. A value that renders empty is left out (no variant, no
    utm_content)."""

    utm: bool = True
    utm_source: str = "cartrescue"
    utm_medium: str = "{channel}"  # email, sms or webhook
    utm_campaign: str = "{sequence}-step{step}"
    utm_content: str = "{variant}"

    @field_validator("utm_source", "utm_medium", "utm_campaign", "utm_content")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        import string

        try:
            names = {name for _text, name, _spec, _conv in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); use {{sequence}}, {{step}}, {{variant}}, {{tier}}, "
                             "{{channel}}")
        unknown = sorted(names - _UTM_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; known: {{sequence}}, {{step}}, {{variant}}, {{tier}}, "
                             "{channel}")
        return value
