"""What :meth:`Config.ignored_keys` names: the keys a file sets that nothing reads with its
source type and channels, and why each is unread.

Apart from ``Config`` so its rules (which keys, which reason) read in one place.
"""

from collections.abc import Callable, Iterator

from pydantic import BaseModel

from cartrescue.config.priority import PriorityConfig, Tier
from cartrescue.config.secret_keys import secret_key

#: The keys of ``source`` only a CSV source reads.
CSV_ONLY = ("carts", "orders", "delimiter", "encoding", "orders_encoding", "columns", "order_columns")


#: ``sms`` keys that serve more than the texts a run sends: the region every phone number is read
#: in, and the inbound replies (STOP) that still come after the last text.
SMS_BEYOND_TEXTS = frozenset({"sms.default_region", "sms.countries", "sms.inbound_url", "sms.http.inbound_from",
                               "sms.http.inbound_text", "sms.http.inbound_id"})


#: Why a ``survey`` key is named while ``survey.url`` is not set; the keys other than ``steps`` go
#: on serving the links of messages sent while it was (:data:`SURVEY_ANSWERS`).
SURVEY_OFF = "survey.url is not set, so no message asks the survey"


#: The answer page (``cartrescue.webhook``), ``survey export``'s labels and ``answered_survey``
#: read them for the answers to links sent before the url was taken out: "remove it" would refuse those.
SURVEY_ANSWERS = ("; only the answers to links of earlier messages read it (their page, survey export, "
                   "answered_survey): set survey.url, or remove this once those links are old")


def set_apart(model: BaseModel, prefix: str, only: tuple[str, ...] | None = None,
               skip: frozenset[str] = frozenset()) -> Iterator[str]:
    """The key paths under ``model`` that the file sets to a value other than the default
    (:meth:`Config.ignored_keys`), in the model's order; sections are gone into, secrets left out."""
    for name, field in type(model).model_fields.items():
        key = prefix + name
        if name not in model.model_fields_set or (only is not None and name not in only) or key in skip \
                or secret_key(name):
            continue
        value, default = getattr(model, name), field.get_default(call_default_factory=True)
        if value == default:
            continue
        if isinstance(value, BaseModel):
            yield from set_apart(value, key + ".", skip=skip)
        else:
            yield key


def unread_budget_keys(priority: PriorityConfig, own_steps: Callable[[Tier], list[int]]) -> Iterator[tuple[str, str]]:
    """The ``budget``, ``budget_per`` and ``over_budget`` of each tier that nothing reads, with
    why (``own_steps``: the steps its budget counts, :meth:`Config.own_channel_steps`). A budget
    counts only sends on the tier's own channel, and ``over_budget: email`` turns only a text or
    a call into an e-mail: the shop that set one where it cannot act believed its calls capped,
    or its best carts all mailed."""
    from cartrescue.ledger.values import NUMBER_CHANNELS  # here: the ledger package brings SQLAlchemy

    for tier in priority.listed():
        key = priority.key(tier.name)
        if tier.budget is None:
            if tier.budget_per != "run":
                yield f"{key}.budget_per", f"tier {tier.name!r} has no budget (set its budget, or remove this)"
        elif not own_steps(tier):
            yield f"{key}.budget", (f"no step of sequence {tier.sequence!r} goes out by {tier.channel} for tier "
                                    f"{tier.name!r}, the one channel its budget counts: remove it, or let a step "
                                    "go out by the tier's channel")
        elif tier.over_budget != "defer" and tier.channel not in NUMBER_CHANNELS:
            yield f"{key}.over_budget", (f"tier {tier.name!r} sends by {tier.channel}, and only a text or a call its "
                                         "budget has no room for goes by e-mail instead: remove it")
