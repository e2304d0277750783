"""Configuration: one YAML file validated into typed models.

Owns the config schema, ``${ENV}`` interpolation, durations (``45m``, ``24h``, ``3d``) and error
messages that name the file, the key path and what was expected. It must not open sources,
ledgers or connections: it only describes them.

A module a job: :mod:`~cartrescue.config.loading` reads the file (YAML, its hints),
:mod:`~cartrescue.config.env` expands ``${ENV}``, :mod:`~cartrescue.config.types` holds the value
types (durations and co.), the section models live in :mod:`~cartrescue.config.shop`,
:mod:`~cartrescue.config.source`, :mod:`~cartrescue.config.ledger`,
:mod:`~cartrescue.config.eligibility`, :mod:`~cartrescue.config.priority`,
:mod:`~cartrescue.config.sequences`, :mod:`~cartrescue.config.channels`,
:mod:`~cartrescue.config.messages` and :mod:`~cartrescue.config.report`, the root model ``Config``
in :mod:`~cartrescue.config.root`; :mod:`~cartrescue.config.errors` words what does not validate,
:mod:`~cartrescue.config.lines` finds each key's line, :mod:`~cartrescue.config.ignored` names the
keys nothing reads, :mod:`~cartrescue.config.secret_keys` keeps secrets out of every message and
:mod:`~cartrescue.config.when` is the time a command runs at. This module re-exports the names the
rest of cartrescue imports from ``cartrescue.config``.

Their annotations are evaluated as the modules run (no ``from __future__ import annotations``):
pydantic compiled and evaluated each field's annotation text again, on every start
(``tests/test_cli_start.py``).
"""

from cartrescue.config.channels import (
    CallListConfig,
    HttpDelivery,
    HttpGatewayConfig,
    OutboxConfig,
    SmsConfig,
    SmtpConfig,
    TwilioConfig,
    WebhookConfig,
    is_loopback_host,
    redacted,
)
from cartrescue.config.eligibility import ConsentPolicy, EligibilityConfig, QuietHours
from cartrescue.config.env import DEFERRED_SECRETS
from cartrescue.config.errors import MOVED_KEYS, UNKNOWN_KEY, format_validation_error
from cartrescue.config.ledger import (
    LOCK_TIMEOUT_FLOOR,
    RETENTION_FLOOR,
    LedgerConfig,
    Retention,
)
from cartrescue.config.loading import (
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    safe_yaml,
    load_config,
)
from cartrescue.config.messages import (
    DEFAULT_REASONS,
    ExperimentsConfig,
    LinksConfig,
    SurveyConfig,
)
from cartrescue.config.priority import (
    CHANNELS,
    MAX_WEIGHT,
    ChannelName,
    MarginRule,
    OverstockRule,
    PriorityConfig,
    ReturningRule,
    Rules,
    Tier,
    ValueRule,
)
from cartrescue.config.report import DoctorConfig, ReportConfig
from cartrescue.config.root import DEFAULT_CONFIG, PERIOD_READS, Config
from cartrescue.config.secret_keys import secret_key
from cartrescue.config.sequences import CodeSource, Incentive, Sequence, Step
from cartrescue.config.shop import ShopConfig, feedback_field
from cartrescue.config.source import (
    KEY_NAME_LENGTH,
    Delimiter,
    Encoding,
    KeyPrefix,
    NewslettersConfig,
    SourceConfig,
    SourceType,
)
from cartrescue.config.types import (
    MAX_DURATION_DAYS,
    Backoff,
    ClockTime,
    Duration,
    EmailAddress,
    OptionalEmail,
    Timeout,
    duration_text,
    parse_duration,
    parse_seconds,
)
from cartrescue.config.when import YEARS, resolve_now, within_reach
from cartrescue.errors import ConfigError

__all__ = [
    "safe_yaml",
    "Backoff",
    "CallListConfig",
    "ChannelName",
    "CHANNELS",
    "ClockTime",
    "CodeSource",
    "Config",
    "ConfigError",
    "ConsentPolicy",
    "DEFAULT_CONFIG",
    "DEFAULT_REASONS",
    "DEFERRED_SECRETS",
    "Delimiter",
    "DoctorConfig",
    "Duration",
    "duration_text",
    "EligibilityConfig",
    "EmailAddress",
    "Encoding",
    "ExperimentsConfig",
    "feedback_field",
    "format_validation_error",
    "HttpDelivery",
    "HttpGatewayConfig",
    "Incentive",
    "is_loopback_host",
    "KEY_NAME_LENGTH",
    "KeyPrefix",
    "LedgerConfig",
    "LinksConfig",
    "load_config",
    "LOCK_TIMEOUT_FLOOR",
    "MarginRule",
    "MAX_DURATION_DAYS",
    "MAX_WEIGHT",
    "MAX_YAML_ALIASES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "MOVED_KEYS",
    "NewslettersConfig",
    "OptionalEmail",
    "OutboxConfig",
    "OverstockRule",
    "parse_duration",
    "parse_seconds",
    "PERIOD_READS",
    "PriorityConfig",
    "QuietHours",
    "redacted",
    "ReportConfig",
    "resolve_now",
    "Retention",
    "RETENTION_FLOOR",
    "ReturningRule",
    "Rules",
    "secret_key",
    "Sequence",
    "ShopConfig",
    "SmsConfig",
    "SmtpConfig",
    "SourceConfig",
    "SourceType",
    "Step",
    "SurveyConfig",
    "Tier",
    "Timeout",
    "TwilioConfig",
    "UNKNOWN_KEY",
    "ValueRule",
    "WebhookConfig",
    "within_reach",
    "YEARS",
]
