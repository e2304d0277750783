"""What became of each decision (``Result``) and a run's tally of them (``Counts``).

Separate so that what reports a run (the job, the output, the summary of a run with workers)
depends on these two values, not on the planner, composer or executor that make them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cartrescue.model import Action, Decision, OutgoingMessage, quick_init, quick_new


@quick_init
@dataclass(frozen=True, slots=True)
class Result:
    """A decision and, for sends, what became of it."""

    decision: Decision
    delivery: str = ""  # "", "dry-run", "sent", "unconfirmed", "failed_transient", "failed_permanent", "claimed_elsewhere"
    detail: str = ""
    message: OutgoingMessage | None = None


new_result = quick_new(Result)  # Result(...) for fewer instructions: a run makes one per cart
_FAILED = ("failed_transient", "failed_permanent", "render_error")
MAX_FAILURE_KINDS = 20
# A reason's length kept in the tally: whole, as the panel (all cron's mail says) shows it. Ours run
# to about 250 characters (the advice at their end: `a port that speaks TLS ... takes smtp.security:
# tls`); a relay's reply line to 512 (RFC 5321). A longer one is cut with a mark.
MAX_FAILURE_LENGTH = 600


@dataclass(slots=True)
class Counts:
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    problems: int = 0
    # Why deliveries failed, by their words (a dry code pool, a relay's 550): a summary that says
    # only "failed 31" sends the owner digging through --json. Bounded: a few kinds, not every text.
    failures: Counter[str] = field(default_factory=Counter)
    # The run's cr_run id once it has one (a delivering run): a run that ends early (Ctrl-C,
    # run-all --timeout, a ledger error) reports it with these counts. Not a count: as_dict leaves it.
    run_id: int | None = None

    def add(self, result: Result) -> None:
        decision = result.decision
        # ``_value_``, not ``.value``: the enum's property is two Python calls, twice a cart.
        self.actions[decision.action._value_] += 1
        self.reasons[decision.reason._value_] += 1
        if result.delivery:
            self.deliveries[result.delivery] += 1
            if result.delivery in _FAILED:
                why = result.detail or result.delivery
                if len(why) > MAX_FAILURE_LENGTH:
                    why = why[:MAX_FAILURE_LENGTH - 1] + "…"
                if why in self.failures or len(self.failures) < MAX_FAILURE_KINDS:
                    self.failures[why] += 1

    @property
    def failed(self) -> int:
        return sum(self.deliveries[kind] for kind in _FAILED)

    def as_dict(self) -> dict[str, object]:
        return {
            "carts": sum(self.actions.values()),
            **{action.value: self.actions[action.value] for action in Action},
            "sent": self.deliveries["sent"],
            "failed": self.failed,
            "problems": self.problems,
            "reasons": dict(sorted(self.reasons.items())),
            "deliveries": dict(sorted(self.deliveries.items())),
            "failures": dict(self.failures.most_common()),
        }
