"""Settings: TOML file plus HELPDESK_* environment overrides, checked once into frozen dataclasses.

Loading order for the file: an explicit ``--config`` path, then ``$HELPDESK_CONFIG``, then
``./helpdesk.toml``, else the embedded defaults alone. Environment variables
``HELPDESK_<SECTION>__<KEY>`` override single keys (the value is read as a TOML value when
it parses as one, else as a plain string). Any unknown key or wrong type raises
:class:`ConfigError` naming the key and the file, so start-up fails in one clear line.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

# Re-exported: every caller imports settings from here.
from helpdesk.configfile import DatabaseSettings as DatabaseSettings
from helpdesk.configfile import LmtpSettings as LmtpSettings
from helpdesk.configfile import LoggingSettings as LoggingSettings
from helpdesk.configfile import SmtpSettings as SmtpSettings
from helpdesk.configfile import StorageSettings as StorageSettings
from helpdesk.configfile import build, read_config
from helpdesk.errors import ConfigError
from helpdesk.mailtokens import base_address

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

StatusClass = Literal["active", "paused", "resolved", "closed"]


@dataclass(frozen=True)
class InstanceSettings:
    id: str = "helpdesk-1"
    name: str = "Helpdesk"
    admin_email: str = "admin@support.example.com"
    timezone: str = "UTC"
    # The daemon roles' event loop (see helpdesk/eventloop.py).
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"

    @property
    def zone(self) -> ZoneInfo:
        """The instance's time zone for local days and dates; UTC when the name is unknown."""
        from zoneinfo import ZoneInfo

        try:
            return ZoneInfo(self.timezone)
        except (KeyError, ValueError):
            return ZoneInfo("UTC")



@dataclass(frozen=True)
class BrokerSettings:
    url: str = "memory://"





@dataclass(frozen=True)
class QueueSettings:
    address: str
    name: str = ""
    category: str = "general"
    autoresponder_template: str = "acknowledgement"


@dataclass(frozen=True)
class OutboundSettings:
    host: str = "127.0.0.1"
    port: int = 25
    # The name we give in EHLO; empty: this machine's fully qualified name.
    ehlo_name: str = ""
    sender: str = "support@support.example.com"
    starttls: bool = False
    tls: bool = False
    username: str = ""
    password: str = ""
    timeout_seconds: float = 30.0
    max_attempts: int = 8
    ack_limit_per_hour: int = 3
    ack_limit_per_domain_per_hour: int = 30
    templates_dir: str = ""
    lease_seconds: float = 0.0
    relay_interval_seconds: float = 1.0
    relay_batch: int = 100
    retry_base_seconds: float = 30.0
    worker_threads: int = 8
    max_in_flight: int = 200


@dataclass(frozen=True)
class PortalSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = "http://127.0.0.1:8080"
    secret_key: tuple[str, ...] = ("change-me-in-production",)
    view_link_days: int = 30
    rating_link_days: int = 14
    product_name: str = "Helpdesk"
    logo_url: str = ""
    max_upload_bytes: int = 10485760


@dataclass(frozen=True)
class ImapSettings:
    host: str
    username: str
    port: int = 993
    ssl: bool = True
    starttls: bool = False
    password: str = ""
    password_file: str = ""
    folder: str = "INBOX"
    processed_folder: str = ""
    quarantine_folder: str = ""
    poll_interval: float = 60.0
    queue: str = ""
    lease_seconds: float = 60.0


@dataclass(frozen=True)
class AgentSettings:
    email: str
    name: str = ""


def find_name(value: str, known: Sequence[str], *, underscore_is_space: bool = False
              ) -> str | None:
    """The name in ``known`` that ``value`` writes in any case and spacing (with
    ``underscore_is_space``, "feature_request" too); None when it names none of them."""
    if underscore_is_space:
        value = value.replace("_", " ")
    if value in known:  # as configured: what the ticket service passes for each new ticket
        return value
    wanted = " ".join(value.split()).lower()
    return next((k for k in known if k.lower() == wanted), None)


_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,30}")


def check_color(color: str) -> str:
    """``color`` if it is ``#rgb``/``#rrggbb`` or a CSS colour name, else ConfigError (a
    colour ends up in the portal's style attribute: nothing else may get there)."""
    color = color.strip()
    if color and not _COLOR.fullmatch(color):
        raise ConfigError(f"{color!r} is not a colour (#rgb, #rrggbb or a name like teal)")
    return color


@dataclass(frozen=True)
class StatusSettings:
    """A ticket status. Once the database holds the statuses (``helpdesk statuses``), they
    come from there; the configured ones only fill a new database."""

    name: str
    status_class: StatusClass = "active"
    color: str = ""

    def __post_init__(self) -> None:
        check_color(self.color)


@dataclass(frozen=True)
class TypeSettings:
    """A ticket type (Bug, Question, ...) and the colour lists show it in."""

    name: str
    color: str = ""

    def __post_init__(self) -> None:
        check_color(self.color)


DEFAULT_TYPES: tuple[TypeSettings, ...] = (
    TypeSettings("Bug", "#d73a4a"),
    TypeSettings("Question", "#0075ca"),
    TypeSettings("Feature Request", "#a2eeef"),
    TypeSettings("Change Request", "#7057ff"),
    TypeSettings("Support", "#008672"),
    TypeSettings("Billing", "#e4e669"),
    TypeSettings("Other", "#cfd3d7"),
)

FOLLOWUP_FIELDS = ("category", "type", "priority", "organization", "assignee")
"""What a follow-up ticket (a reply to a closed one) can take over from the closed one."""


DEFAULT_STATUSES: tuple[StatusSettings, ...] = (
    StatusSettings("Open", "active"),
    StatusSettings("Pending", "paused"),
    StatusSettings("In Progress", "active"),
    StatusSettings("On Hold", "paused"),
    StatusSettings("Resolved", "resolved"),
    StatusSettings("Closed", "closed"),
)


@dataclass(frozen=True)
class TicketSettings:
    prefix: str = "TKT-"
    digits: int = 6
    statuses: tuple[StatusSettings, ...] = DEFAULT_STATUSES
    types: tuple[TypeSettings, ...] = DEFAULT_TYPES
    default_type: str = "Other"
    # what a follow-up ticket takes over from the closed ticket it follows up
    followup_inherits: tuple[str, ...] = FOLLOWUP_FIELDS
    priorities: tuple[str, ...] = ("low", "normal", "high", "urgent", "critical")
    default_priority: str = "normal"
    categories: tuple[str, ...] = (
        "general",
        "question",
        "billing",
        "technical",
        "account",
        "feature request",
        "change request",
        "bug report",
        "other",
    )
    channels: tuple[str, ...] = ("email", "web", "phone", "chat", "internal")
    reply_to_closed: Literal["new", "reopen"] = "new"
    freemail_domains: tuple[str, ...] = (
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.ru",
        "yandex.ru",
        "proton.me",
        "protonmail.com",
    )

    def __post_init__(self) -> None:
        names = [t.name.lower() for t in self.types]
        if not names:
            raise ConfigError("'tickets.types' needs at least one type")
        if len(set(names)) != len(names):
            raise ConfigError("'tickets.types': a type is named twice")
        if self.default_type.lower() not in names:
            raise ConfigError(f"'tickets.default_type' {self.default_type!r} is not one of "
                              f"'tickets.types' ({', '.join(t.name for t in self.types)})")
        unknown = set(self.followup_inherits) - set(FOLLOWUP_FIELDS)
        if unknown:
            raise ConfigError(f"'tickets.followup_inherits': {sorted(unknown)} cannot be "
                              f"inherited (choose from {', '.join(FOLLOWUP_FIELDS)})")

    def canonical_type(self, name: str) -> str | None:
        """The configured type named ``name`` in any case; None when there is none."""
        return find_name(name, [t.name for t in self.types], underscore_is_space=True)


@dataclass(frozen=True)
class ClassifySettings:
    ignore_lists: bool = True


@dataclass(frozen=True)
class RoutingRule:
    """One routing rule; conditions are ANDed, an empty condition always matches."""

    name: str
    enabled: bool = True
    match: Literal["substring", "regex"] = "substring"
    sender: str = ""
    recipient: str = ""
    subject: str = ""
    body: str = ""
    category: str = ""
    priority: str = ""
    type: str = ""
    tags: tuple[str, ...] = ()
    assignee: str = ""


@dataclass(frozen=True)
class TeamSettings:
    """A team: agents (by address) who share work, and its lead (the fallback)."""

    name: str
    members: tuple[str, ...] = ()
    lead: str = ""


@dataclass(frozen=True)
class Conditions:
    """What a ticket must look like for a rule; all given conditions must hold.

    A value written ``/.../`` is a case-insensitive regular expression, anything else a
    case-insensitive substring (``tags``: every listed tag present).
    """

    queue: str = ""
    category: str = ""
    priority: str = ""
    type: str = ""
    organization: str = ""  # the requester's organization (its domain)
    sender_domain: str = ""
    subject: str = ""
    body: str = ""
    channel: str = ""
    tags: tuple[str, ...] = ()

    TEXT: ClassVar[tuple[str, ...]] = ("queue", "category", "priority", "type",
                                       "organization", "sender_domain", "subject", "body",
                                       "channel")
    """The conditions that are a substring or a ``/regex/`` (all but ``tags``)."""

    def __post_init__(self) -> None:
        for name in self.TEXT:
            value = getattr(self, name)
            regex = regex_of(value)
            if regex is not None:
                try:
                    re.compile(regex)
                except re.error as exc:
                    raise ConfigError(f"'{name}': bad regular expression {value!r}: "
                                      f"{exc}") from None


def regex_of(pattern: str) -> str | None:
    """The regular expression a condition written ``/.../`` holds; None for a substring."""
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return pattern[1:-1]
    return None


@dataclass(frozen=True)
class AssignmentRule:
    """One auto-assignment rule (``[[assignment]]``), tried in order; first match wins.

    ``assign``: one agent's address. Otherwise ``method`` picks within ``team``:
    ``round_robin`` (each available member in turn), ``least_busy`` (fewest open tickets,
    ties to whoever was assigned least recently) or ``category`` (``categories`` maps a
    ticket category to a team, then round robin in it). Away and inactive agents are
    skipped; when nobody is left, ``fallback`` is the team's lead or nobody.
    """

    name: str
    enabled: bool = True
    when: Conditions = field(default_factory=Conditions)
    assign: str = ""
    team: str = ""
    method: Literal["round_robin", "least_busy", "category"] = "round_robin"
    categories: dict[str, str] = field(default_factory=dict)
    fallback: Literal["nobody", "lead"] = "nobody"


Trigger = Literal["ticket_created", "requester_replied", "agent_replied", "status_changed",
                  "assigned", "priority_changed", "resolved", "reopened", "sla_warning",
                  "sla_breached", "csat_rated", "idle"]


@dataclass(frozen=True)
class AutomationConditions(Conditions):
    """An automation's conditions: those of assignment rules, and the ticket's state.

    ``status``: the status now; ``from_status``/``to_status``: of a ``status_changed``;
    ``assignee``: the assigned agent's address ("none" for unassigned); ``min_score`` and
    ``max_score``: of a ``csat_rated``.
    """

    status: str = ""
    from_status: str = ""
    to_status: str = ""
    assignee: str = ""
    min_score: int = 0
    max_score: int = 0


@dataclass(frozen=True)
class AutomationAction:
    """One action; give exactly one of its fields.

    ``set``: fields to set (status, priority, category, type); ``tag``: "+a -b"; ``note``: an
    internal note's text; ``assign``: an agent's address, ``team:NAME`` (round robin) or
    ``none``; ``mail``: ``{to, template}``, a templated mail through the outbox to the
    requester (on the public thread), the assignee, the ticket's team lead, a team
    (``team:NAME``) or an address (staff-only notices); ``webhook``: ``{url, secret}``, a
    JSON POST signed with HMAC-SHA256, sent by the workers through the outbox.
    """

    set: dict[str, str] = field(default_factory=dict)
    tag: str = ""
    note: str = ""
    assign: str = ""
    mail: dict[str, str] = field(default_factory=dict)
    webhook: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given = [name for name in ("set", "tag", "note", "assign", "mail", "webhook")
                 if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError("an action gives exactly one of set, tag, note, assign, mail, "
                              f"webhook (this one gives {given or 'none'})")
        if self.webhook:
            url = self.webhook.get("url", "")
            if set(self.webhook) - {"url", "secret"} or not url.startswith(
                    ("http://", "https://")):
                raise ConfigError("'webhook' gives 'url' (http:// or https://) and "
                                  "optionally 'secret' (the HMAC-SHA256 key)")
        if self.mail and (set(self.mail) != {"to", "template"}):
            raise ConfigError("'mail' gives 'to' (requester, assignee, team_lead, "
                              "team:NAME or an address) and 'template'")
        unknown = set(self.set) - {"status", "priority", "category", "type"}
        if unknown:
            raise ConfigError(f"'set' changes status, priority, category or type, not "
                              f"{sorted(unknown)}")


@dataclass(frozen=True)
class Automation:
    """``[[automations]]``: on a trigger, when the conditions hold, run the actions."""

    name: str
    on: Trigger
    enabled: bool = True
    when: AutomationConditions = field(default_factory=AutomationConditions)
    actions: tuple[AutomationAction, ...] = ()
    stop: bool = False  # no later automation runs for the same event
    hours: float = 0  # "idle": no public message for this many business hours


@dataclass(frozen=True)
class AutomationDefaults:
    """The shipped automations (``[automation_defaults]``); 0 or false switches one off.

    Business hours are counted on the ticket's SLA calendar: 24 and 56 are three and
    seven days of the default 09:00-17:00 working day.
    """

    pending_reminder_hours: float = 24  # a reminder to the requester of a paused ticket
    pending_resolve_hours: float = 56  # then the ticket is resolved (the requester is told)
    urgent_breach_to_lead: bool = True  # an urgent ticket's SLA breach mails the team lead


@dataclass(frozen=True)
class SlaPolicySettings:
    """One SLA policy; targets are minutes per priority (a missing priority has no target)."""

    name: str
    default: bool = False
    timezone: str = ""  # "" means [instance] timezone
    always: bool = False  # 24x7: ignores days/start/end/holidays
    days: tuple[int, ...] = (0, 1, 2, 3, 4)  # 0 = Monday
    start: str = "09:00"
    end: str = "17:00"
    holidays: tuple[str, ...] = ()  # ISO dates
    pause_statuses: tuple[str, ...] = ()  # empty: the statuses of the "paused" class
    first_response_minutes: dict[str, int] = field(default_factory=dict)
    resolution_minutes: dict[str, int] = field(default_factory=dict)
    organizations: tuple[str, ...] = ()  # conditions: choose this policy for these
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlaSettings:
    tick_seconds: float = 30.0
    warn_fraction: float = 0.8
    batch_size: int = 500
    policies: tuple[SlaPolicySettings, ...] = ()


@dataclass(frozen=True)
class CommandSettings:
    """Agent commands by mail, and how an agent's mail is authenticated."""

    prefix: str = "#"
    trusted_authserv_ids: tuple[str, ...] = ()
    trusted_relay_hosts: tuple[str, ...] = ()
    accept_spf_pass: bool = True
    verify_dkim: bool = False
    # An agent's reply to a message another agent has answered since: "hold" keeps it as
    # a draft and asks (#send / #discard), "warn" sends it and tells the agent, "off".
    collision: Literal["hold", "warn", "off"] = "hold"

    def __post_init__(self) -> None:
        for host in self.trusted_relay_hosts:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError:
                raise ConfigError(f"'commands.trusted_relay_hosts': {host!r} is not an IP "
                                  "address or network") from None

    def is_trusted_relay(self, peer: str) -> bool:
        """Whether an SMTP client at ``peer`` (an IP address) is the trusted relay."""
        return _is_trusted_relay(peer, self.trusted_relay_hosts)


@functools.lru_cache(maxsize=4096)
def _is_trusted_relay(peer: str, hosts: tuple[str, ...]) -> bool:
    """Asked for every mail the SMTP receiver takes, by the few addresses of its clients."""
    try:
        address = ipaddress.ip_address(peer.strip("[]"))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(h, strict=False) for h in hosts)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class BoardSettings:
    """``[board]``: each agent's daily board, mailed at ``hour`` (instance time zone) on
    the working ``days``; agents opt out with ``helpdesk agents prefs --no-board``."""

    enabled: bool = True
    hour: int = 8
    days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")

    def __post_init__(self) -> None:
        if not 0 <= self.hour <= 23:
            raise ConfigError(f"'board.hour' must be 0 to 23, not {self.hour}")


@dataclass(frozen=True)
class ReportSettings:
    """``[reports]``: the scheduled report, mailed to the admin and ``recipients`` as HTML
    with charts and the PDF attached, covering the period just ended.

    ``schedule``: off, daily, weekly (on ``day``) or monthly (on ``day_of_month``), at
    ``hour`` in the instance time zone.
    """

    schedule: Literal["off", "daily", "weekly", "monthly"] = "weekly"
    day: Weekday = "mon"
    day_of_month: int = 1
    hour: int = 7
    recipients: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.hour <= 23:
            raise ConfigError(f"'reports.hour' must be 0 to 23, not {self.hour}")
        if not 1 <= self.day_of_month <= 28:
            raise ConfigError("'reports.day_of_month' must be 1 to 28 (every month has it)")


@dataclass(frozen=True)
class TaskSettings:
    """``[tasks]``: where ``#task`` turns a ticket into a task (an issue tracker's hook).

    The ticket is POSTed as JSON to ``endpoint``, signed as the automation webhooks are
    (``X-Helpdesk-Signature: sha256=HMAC`` with ``secret``); the answer's JSON ``url``
    (or its ``Location`` header) becomes the ticket's ``task`` link.
    """

    endpoint: str = ""
    secret: str = ""

    def __post_init__(self) -> None:
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"'tasks.endpoint' must be an http:// or https:// URL, not "
                              f"{self.endpoint!r}")


PERMISSIONS = ("ticket.view", "ticket.create", "ticket.update", "ticket.delete")
AgentRole = Literal["admin", "agent", "light"]
AGENT_ROLES: tuple[AgentRole, ...] = ("admin", "agent", "light")


@dataclass(frozen=True)
class PermissionSettings:
    """``[permissions]``: what each agent role may do.

    ``ticket.view``: read, add internal notes, watch, log time; ``ticket.create``: open a
    ticket by mail; ``ticket.update``: reply publicly and change fields; ``ticket.delete``:
    merge a ticket away (it retires the source). A light agent only views by default.
    """

    admin: tuple[str, ...] = PERMISSIONS
    agent: tuple[str, ...] = PERMISSIONS
    light: tuple[str, ...] = ("ticket.view",)

    def __post_init__(self) -> None:
        for role in AGENT_ROLES:
            unknown = set(getattr(self, role)) - set(PERMISSIONS)
            if unknown:
                raise ConfigError(f"'permissions.{role}': unknown {sorted(unknown)} "
                                  f"(known: {', '.join(PERMISSIONS)})")

    def allows(self, role: str, permission: str) -> bool:
        """Whether ``role`` holds ``permission``; an unknown role holds nothing."""
        granted: tuple[str, ...] = getattr(self, role, ()) if role in AGENT_ROLES else ()
        return permission in granted



@dataclass(frozen=True)
class Settings:
    instance: InstanceSettings = field(default_factory=InstanceSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    lmtp: LmtpSettings = field(default_factory=LmtpSettings)
    queues: tuple[QueueSettings, ...] = ()
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    imap: tuple[ImapSettings, ...] = ()
    agents: tuple[AgentSettings, ...] = ()
    tickets: TicketSettings = field(default_factory=TicketSettings)
    classify: ClassifySettings = field(default_factory=ClassifySettings)
    routing: tuple[RoutingRule, ...] = ()
    teams: tuple[TeamSettings, ...] = ()
    assignment: tuple[AssignmentRule, ...] = ()
    automations: tuple[Automation, ...] = ()
    automation_defaults: AutomationDefaults = field(default_factory=AutomationDefaults)
    sla: SlaSettings = field(default_factory=SlaSettings)
    commands: CommandSettings = field(default_factory=CommandSettings)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    board: BoardSettings = field(default_factory=BoardSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    permissions: PermissionSettings = field(default_factory=PermissionSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str = "<embedded defaults>"

    def status_class(self, status: str) -> StatusClass | None:
        """The class of a configured status name (case-insensitive), None when unknown."""
        for s in self.tickets.statuses:
            if s.name.lower() == status.lower():
                return s.status_class
        return None

    def __post_init__(self) -> None:
        teams = [t.name for t in self.teams]
        if len(set(teams)) != len(teams):
            raise ConfigError(f"[[teams]]: a team name is used twice: {teams}")
        for rule in self.assignment:
            where = f"[[assignment]] {rule.name!r}"
            named = [rule.team] if rule.team else []
            named += list(rule.categories.values())
            for team in named:
                if team not in teams:
                    raise ConfigError(f"{where}: unknown team {team!r} (known: {teams})")
            if not rule.assign and rule.method != "category" and not rule.team:
                raise ConfigError(f"{where}: give 'assign' (an agent) or a 'team'")
            if rule.method == "category" and not rule.categories and not rule.assign:
                raise ConfigError(f"{where}: method 'category' needs 'categories'")

        types = ", ".join(t.name for t in self.tickets.types)
        for routing in self.routing:
            if routing.type and self.tickets.canonical_type(routing.type) is None:
                raise ConfigError(f"[[routing]] {routing.name!r}: unknown type "
                                  f"{routing.type!r} (known: {types})")
        for automation in self.automations:
            where = f"[[automations]] {automation.name!r}"
            for action in automation.actions:
                wanted = action.set.get("type", "")
                if wanted and self.tickets.canonical_type(wanted) is None:
                    raise ConfigError(f"{where}: unknown type {wanted!r} (known: {types})")
            if (automation.on == "idle") != (automation.hours > 0):
                raise ConfigError(f"{where}: 'hours' (more than 0) goes with on = \"idle\", "
                                  "and only with it")
            for action in automation.actions:
                for target in (action.assign, action.mail.get("to", "")):
                    target = target.strip().lower()
                    if target.startswith("team:") and target[5:] not in teams:
                        raise ConfigError(f"{where}: unknown team {target[5:]!r} "
                                          f"(known: {teams})")
                template = action.mail.get("template", "")
                if template and not self._template_exists(template):
                    raise ConfigError(f"{where}: unknown template {template!r} (no "
                                      f"{template}.txt and .html in the templates folders)")

    def _template_exists(self, name: str) -> bool:
        from helpdesk.resources import templates_dir

        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            return False
        folders = [Path(self.outbound.templates_dir)] if self.outbound.templates_dir else []
        folders.append(templates_dir("email"))
        return any((f / f"{name}.txt").is_file() and (f / f"{name}.html").is_file()
                   for f in folders)

    def team(self, name: str) -> TeamSettings | None:
        return next((t for t in self.teams if t.name == name), None)

    def own_addresses(self) -> frozenset[str]:
        """The addresses we send from or receive as: mail *from* one of them is ours.

        Lowercase, without plus-tags: the outbound sender, every queue address and the
        extra ``[smtp] addresses``.
        """
        found = {self.outbound.sender, *(q.address for q in self.queues), *self.smtp.addresses}
        return frozenset(base_address(a) for a in found if "@" in a)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
                  *, search: bool = True) -> Settings:
    """Build the one Settings object for a process (the arguments as `read_config`'s).

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key or a value of the wrong type.
    """
    config = read_config(path, environ, search=search)
    settings: Settings = build(Settings, config)
    return dataclasses.replace(settings, source=config.source)
