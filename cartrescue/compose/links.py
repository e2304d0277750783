"""Every URL that goes into a message: only http(s) from data, and UTM tags on links.

Owns two rules for the template context (:meth:`cartrescue.compose.render.Renderer.context`):

- **safety**: a URL that comes from cart data (recovery URL, product links, images) reaches a
  link or an image only when it is ``http://`` or ``https://``. ``javascript:``, ``data:``,
  ``vbscript:``, relative and scheme-less URLs are dropped: a link falls back to the shop's URL,
  an image is left out. The scheme is read the way browsers read it (leading spaces and control
  characters stripped, tabs and newlines removed anywhere), so ``" java\\tscript:"`` is refused.
- **tagging**: every link (not images, not the unsubscribe link) carries the UTM parameters of
  ``links:`` in the config (on by default), so the shop's own analytics see the traffic: source,
  medium, campaign (sequence and step), content (the A/B variant). A parameter the URL already
  has is kept as it is.

It must not render templates nor decide who gets what; it only rewrites URL strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import parse_qsl, quote

from cartrescue.config import LinksConfig

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content")
_EDGES = "".join(chr(code) for code in range(0x21))  # C0 controls and space
_TABS_NEWLINES = re.compile("[\t\n\r]")
_SAFE = ("http://", "https://")

Tag = Callable[[str | None], str | None]


def safe_url(value: str | None) -> str | None:
    """``value`` cleaned as a browser would read it, if it is http(s); ``None`` otherwise."""
    if not value:
        return None
    text = value.strip(_EDGES)
    if "\t" in text or "\n" in text or "\r" in text:
        text = _TABS_NEWLINES.sub("", text)
    if (text.startswith(_SAFE) or text[:8].lower().startswith(_SAFE)) and len(text) > len("https://"):
        return text
    return None


@lru_cache(maxsize=1024)
def utm_values(links: LinksConfig, sequence: str | None, step: int, variant: str | None,
               tier: str | None, channel: str = "email") -> dict[str, str]:
    """The UTM parameters of one message (empty values left out), or ``{}`` when tagging is off."""
    if not links.utm:
        return {}
    fields = {"sequence": sequence or "cart", "step": str(step), "variant": variant or "", "tier": tier or "",
              "channel": channel}
    values = {
        "utm_source": links.utm_source.format(**fields),
        "utm_medium": links.utm_medium.format(**fields),
        "utm_campaign": links.utm_campaign.format(**fields),
        "utm_content": links.utm_content.format(**fields),
    }
    return {key: value for key, value in values.items() if value}


@lru_cache(maxsize=256)
def _suffix(pairs: tuple[tuple[str, str], ...]) -> str:
    return "&".join(f"{key}={quote(value, safe='')}" for key, value in pairs)


def add_params(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` added before any ``#fragment``; keys the URL has are kept."""
    if not params:
        return url
    base, hash_mark, fragment = url.partition("#")
    path, question, query = base.partition("?")
    if query and "utm_" in query:
        present = {key for key, _value in parse_qsl(query, keep_blank_values=True)}
        params = {key: value for key, value in params.items() if key not in present}
        if not params:
            return url
    suffix = _suffix(tuple(params.items()))
    if question:
        joined = f"{base}&{suffix}" if query and not query.endswith("&") else f"{base}{suffix}"
    else:
        joined = f"{path}?{suffix}"
    return joined + hash_mark + fragment


def tagger(links: LinksConfig, sequence: str | None, step: int, variant: str | None, tier: str | None,
           channel: str = "email") -> Tag:
    """A function that makes a URL from data safe (``None`` if it is not) and tags it."""
    params = utm_values(links, sequence, step, variant, tier, channel)
    # The query add_params joins to a URL without a query or fragment of its own, made once per
    # tagger: a cart's recovery URL (new in every message) is nearly always such a URL.
    query = "?" + _suffix(tuple(params.items())) if params else ""

    def tag(url: str | None) -> str | None:
        clean = safe_url(url)
        if clean is None:
            return None
        if "?" not in clean and "#" not in clean:
            return clean + query  # what add_params gives such a URL
        return add_params(clean, params)

    return tag


def missing_utm(url: str, params: dict[str, str]) -> list[str]:
    """The keys of ``params`` that ``url``'s query lacks (for ``templates check``)."""
    query = url.partition("#")[0].partition("?")[2]
    present = {key for key, _value in parse_qsl(query, keep_blank_values=True)}
    return [key for key in params if key not in present]
