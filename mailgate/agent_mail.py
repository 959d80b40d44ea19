"""Apply an authenticated agent's mail to a ticket: its command block, its reply, its errors.

The contract (issue "agents work by email"):

- The command block at the top of the body (``mailgate.commands``) runs through the
  ticket service, in the caller's transaction, together with the message: all of it
  commits or none of it does. A line that fails (unknown command, bad value, refused
  action) changes nothing; the other lines still apply, and the agent gets *one* mail
  (outbox kind ``agent_error``, template ``agent_command_errors``) listing each failed
  line and why.
- ``#note`` files the whole mail as an internal note. Otherwise the text after the block
  (plus any ``#canned`` responses, rendered in a Jinja2 sandbox with ``ticket``,
  ``requester`` and ``agent``) is a public reply by the agent, which the Notifier relays
  to the requester and which counts as the first response. A mail holding only commands
  adds no message, so nothing reaches the requester.
- ``#watch`` and ``#unwatch`` run before the reply is added: a watcher added by the mail
  receives its reply, one it removes does not.
- ``#merge`` runs last, after every other line has acted on this ticket.
- ``#help`` answers the agent with the command list (template ``agent_help``).

The mails to the agent (errors, help, and the ``agent_auth_refused`` notice for mail that
could not be authenticated and was handled as an ordinary contact's) are queued by
``mailgate._agent_notices`` (its public names are re-exported here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.assignment import assign_by_rules
from helpdesk.audit import Actor
from helpdesk.desk import QUERY_COMMANDS, answer
from helpdesk.directory import find_agent, find_agent_by_name, get_or_create_contact
from helpdesk.errors import DomainError
from helpdesk.models import (
    Agent,
    CannedResponse,
    Contact,
    Message,
    OutboxRow,
    Ticket,
    Watcher,
)
from helpdesk.notify import agent_reply_address as agent_reply_address
from helpdesk.permissions import PUBLIC_REPLY, command_needs, missing, require
from helpdesk.relations import URL_KINDS
from helpdesk.runtime import Runtime
from helpdesk.tasks import request_task
from helpdesk.tickets import DRAFT, NewAttachment, TicketService
from mailgate import _spool
from mailgate._agent_notices import REFUSALS_PER_HOUR as REFUSALS_PER_HOUR
from mailgate._agent_notices import mail_agent
from mailgate._agent_notices import refuse_agent_mail as refuse_agent_mail
from mailgate._agent_notices import refuse_unauthenticated as refuse_unauthenticated
from mailgate.agent_auth import AuthResult, authenticate_agent
from mailgate.commands import (
    Command,
    ParsedBody,
    describe_commands,
    parse_commands,
    parse_due,
)
from mailgate.parse import Inbound

WATCH_COMMANDS = frozenset({"watch", "unwatch"})
"""Run before the mail's reply is added, so that the reply goes to the watchers they name."""


class Refused(DomainError):
    """Raised when one command line cannot be applied; the message is mailed to the agent."""


@dataclass
class AgentMailOutcome:
    """What an agent's mail did: the message added (if any), lines applied and failed."""

    message: Message | None = None
    applied: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    merged_into: Ticket | None = None


# -- authentication (the I/O around the pure check) -------------------------------------------


async def authenticate(session: AsyncSession, rt: Runtime, msg: Inbound, agent: Agent,
                       recipients: Sequence[str], spool_id: int, *,
                       via_trusted_relay: bool) -> AuthResult:
    """Authenticate mail whose From is ``agent``'s address; reads the raw bytes from the spool."""
    raw = await _spool.raw_message(session, rt.store, spool_id) or b""
    header_rcpts = [a.email for a in (*msg.to, *msg.cc) if a.email]
    assert msg.sender is not None
    return await asyncio.to_thread(
        authenticate_agent, raw, agent_id=agent.id, from_address=msg.sender.email,
        recipients=[*recipients, *header_rcpts], secrets=rt.secrets,
        settings=rt.settings.commands, via_trusted_relay=via_trusted_relay)


# -- questions without a ticket ----------------------------------------------------------------


def queries_of(rt: Runtime, msg: Inbound) -> ParsedBody | None:
    """The command block of an agent's mail when it asks only questions (``#list``,
    ``#search``, ``#help``): such mail to the support address is answered and opens no
    ticket."""
    s = rt.settings
    parsed = parse_commands(msg.visible_text, prefix=s.commands.prefix,
                            ticket_prefix=s.tickets.prefix)
    names = {c.name for c in parsed.commands}
    if not names & QUERY_COMMANDS or names - QUERY_COMMANDS - {"help"} or parsed.errors:
        return None
    return parsed


async def answer_queries(rt: Runtime, session: AsyncSession, agent: Agent, msg: Inbound,
                         parsed: ParsedBody) -> list[str]:
    """Answer each question of ``parsed`` (permissions checked); returns what was asked."""
    asked = []
    for cmd in parsed.commands:
        if cmd.name not in QUERY_COMMANDS:
            continue
        require(rt.settings.permissions, agent.role, command_needs(cmd.name),
                doing=f"use {rt.settings.commands.prefix}{cmd.name}")
        await answer(rt, session, agent, cmd.name, cmd.args[0],
                     in_reply_to=msg.message_id, asked=cmd.line)
        asked.append(cmd.line)
    return asked


# -- applying ---------------------------------------------------------------------------------


def render_canned(body: str, *, ticket: dict[str, Any], requester: dict[str, Any],
                  agent: dict[str, Any]) -> str:
    """Render a canned response body in a sandbox; undefined names are errors.

    Raises:
        Refused: the template does not parse, names an unknown variable or breaks the
            sandbox.
    """
    import jinja2  # here, not at the top: only #canned needs it, and the MTA pipe starts
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # once per mail

    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                        keep_trailing_newline=False)
    try:
        return env.from_string(body).render(ticket=ticket, requester=requester, agent=agent)
    except jinja2.TemplateError as exc:
        raise Refused(f"the canned response does not render: {exc}") from exc


class AgentMail:
    """One authenticated agent mail being applied to one ticket, in the caller's transaction."""

    def __init__(self, rt: Runtime, service: TicketService, ticket: Ticket, agent: Agent,
                 msg: Inbound) -> None:
        self.rt = rt
        self.service = service
        self.session = service.session
        self.ticket = ticket
        self.agent = agent
        self.msg = msg
        self.actor = Actor("agent", agent.email, agent.id)
        self.settings = rt.settings

    async def apply(self, *, via: str, spool_id: int, attachments: Sequence[NewAttachment],
                    internal: bool = False) -> AgentMailOutcome:
        """Run the command block, add the reply or note, mail the agent errors or help.

        ``internal``: the mail answers a staff-only notice, so its text is an internal
        note as if it said ``#note``.
        """
        s = self.settings
        parsed = parse_commands(self.msg.visible_text, prefix=s.commands.prefix,
                                ticket_prefix=s.tickets.prefix)
        out = AgentMailOutcome(failed=[(e.line, e.reason) for e in parsed.errors])
        texts = [parsed.reply_text.strip()] if parsed.reply_text.strip() else []
        for cmd in parsed.commands:
            if cmd.name == "canned":
                try:
                    self._allow(cmd)
                    texts.append((await self._canned(cmd.args[0])).strip())
                    out.applied.append(cmd.line)
                except DomainError as exc:
                    out.failed.append((cmd.line, str(exc)))
        text = "\n\n".join(t for t in texts if t)
        is_note = parsed.is_note or internal
        lacking = missing(s.permissions, self.agent.role, PUBLIC_REPLY)
        if not is_note and (text or attachments) and lacking:
            is_note = True  # kept, where the requester cannot see it
            out.failed.append(("(your reply)", f"your role ({self.agent.role}) may not reply "
                               f"publicly: it lacks {', '.join(lacking)}. The text is kept "
                               "as an internal note."))
        # Who watches changes before the reply is added, so the reply reaches whom the
        # same mail added (and not whom it removed): the Notifier relays at add_message.
        early = {id(cmd): await self._try(cmd) for cmd in parsed.commands
                 if cmd.name in WATCH_COMMANDS}
        answered = None  # another agent's reply since the mail this one answers
        if not is_note and (text or attachments) and s.commands.collision != "off":
            answered = await self._answered_since()
        held = answered is not None and s.commands.collision == "hold"
        if is_note or text or attachments:
            out.message = await self.service.add_message(
                self.ticket, kind="internal" if is_note else DRAFT if held else "public",
                text=text or "(no text)", actor=self.actor, author_agent=self.agent, via=via,
                subject=self.msg.subject, full_text=self.msg.text, html=self.msg.html,
                message_id=self.msg.message_id, spool_id=spool_id, attachments=attachments)
        if answered is not None:
            await self._tell_collision(answered, held=held)
        merge: Command | None = None
        for cmd in parsed.commands:
            if cmd.name in ("canned", "note"):
                if cmd.name == "note":
                    out.applied.append(cmd.line)
                continue
            if cmd.name == "merge":
                merge = cmd
                continue
            refusal = early[id(cmd)] if id(cmd) in early else await self._try(cmd)
            if refusal is None:
                out.applied.append(cmd.line)
            else:
                out.failed.append((cmd.line, refusal))
        if merge is not None:
            try:
                self._allow(merge)
                out.merged_into = await self._merge(int(merge.args[0]))
                out.applied.append(merge.line)
            except DomainError as exc:
                out.failed.append((merge.line, str(exc)))
        if out.failed:
            await mail_agent(
                self.rt, self.session, self.ticket, self.agent, self.msg, kind="agent_error",
                template="agent_command_errors",
                context={"errors": [{"line": line, "reason": why} for line, why in out.failed],
                         "applied": out.applied, "prefix": s.commands.prefix})
        return out

    # -- two agents answering at once ------------------------------------------------------

    async def _answered_since(self) -> Message | None:
        """Another agent's public reply made after the mail this one answers was sent.

        The mail an agent answers is one of ours (a notice, a relayed reply, a list): its
        outbox row knows when it went out. A reply to anything else is not guarded.
        """
        refs = [*self.msg.in_reply_to, *self.msg.references[-1:]]
        if not refs:
            return None
        sent = (await self.session.execute(select(OutboxRow.created_at).where(
            OutboxRow.message_id.in_(refs), OutboxRow.ticket_id == self.ticket.id)
            .order_by(OutboxRow.created_at.desc()).limit(1))).scalar()
        if sent is None:
            return None
        return (await self.session.execute(select(Message).where(
            Message.ticket_id == self.ticket.id, Message.kind == "public",
            Message.author_agent_id.is_not(None), Message.author_agent_id != self.agent.id,
            Message.created_at > sent).order_by(Message.id.desc()).limit(1))
        ).unique().scalar_one_or_none()

    async def _tell_collision(self, other: Message, *, held: bool) -> None:
        author = other.author_agent
        await mail_agent(
            self.rt, self.session, self.ticket, self.agent, self.msg, kind="agent_notice",
            template="agent_collision",
            context={"held": held, "prefix": self.settings.commands.prefix,
                     "other": {"name": author.name if author else "",
                               "email": author.email if author else "",
                               "at": other.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                               "text": other.text}})

    async def _draft(self) -> Message:
        """This agent's latest held reply on the ticket."""
        draft = (await self.session.execute(select(Message).where(
            Message.ticket_id == self.ticket.id, Message.kind == DRAFT,
            Message.author_agent_id == self.agent.id).order_by(Message.id.desc()).limit(1))
        ).unique().scalar_one_or_none()
        if draft is None:
            raise Refused(f"you have no held reply on {self.service.reference(self.ticket)}")
        return draft

    def _allow(self, cmd: Command) -> None:
        """Raise `Forbidden` when the agent's role may not run ``cmd``."""
        require(self.settings.permissions, self.agent.role, command_needs(cmd.name),
                doing=f"use {self.settings.commands.prefix}{cmd.name}")

    async def _try(self, cmd: Command) -> str | None:
        """Run one command line; returns why it was refused (for the agent), or None."""
        try:
            self._allow(cmd)
            await self._run(cmd)
        except DomainError as exc:
            return str(exc)
        return None

    async def _run(self, cmd: Command) -> None:
        svc, t, actor, args = self.service, self.ticket, self.actor, cmd.args
        if cmd.name == "status":
            await svc.set_status(t, args[0], actor, reason="by mail")
        elif cmd.name == "close":
            await svc.set_status(t, self._status_of_class("closed"), actor, reason="by mail")
        elif cmd.name == "reopen":
            await svc.set_status(t, self.settings.tickets.statuses[0].name, actor,
                                 reason="by mail")
        elif cmd.name == "priority":
            await svc.set_priority(t, args[0], actor)
        elif cmd.name == "category":
            await svc.set_category(t, args[0], actor)
        elif cmd.name == "type":
            await svc.set_type(t, args[0], actor)
        elif cmd.name in ("link", "unlink"):
            await self._link(cmd.name, args)
        elif cmd.name == "task":
            await request_task(self.rt, svc, t, args[0] if args else "", actor)
        elif cmd.name == "send":
            await svc.send_draft(t, await self._draft(), actor)
        elif cmd.name == "discard":
            await svc.discard_draft(t, await self._draft(), actor)
        elif cmd.name in QUERY_COMMANDS:
            await svc.tx.flush()  # the answer reads tickets this mail may have changed
            await answer(self.rt, self.session, self.agent, cmd.name, args[0],
                         in_reply_to=self.msg.message_id, asked=cmd.line)
        elif cmd.name == "assign" and args[0] == "auto":
            rule = await assign_by_rules(self.rt, self.session, t.number)
            if rule is None:
                raise Refused("no assignment rule matches this ticket")
        elif cmd.name == "assign":
            await svc.assign(t, await self._agent(args[0]), actor)
        elif cmd.name == "away":
            self.agent.away_until = None if args[0] == "off" else self._away_until(args[0])
        elif cmd.name == "unassign":
            await svc.assign(t, None, actor)
        elif cmd.name == "tag":
            adds = [a[1:] for a in args if a.startswith("+")]
            removes = [a[1:] for a in args if a.startswith("-")]
            if adds:
                await svc.add_tags(t, adds, actor)
            if removes:
                await svc.remove_tags(t, removes, actor)
        elif cmd.name == "due":
            await svc.set_due(t, self._due(args[0]), actor)
        elif cmd.name == "watch":
            await self._watch(args)
        elif cmd.name == "unwatch":
            await self._unwatch(args)
        elif cmd.name == "time":
            await self._time(int(args[0]), args[1] if len(args) > 1 else "")
        elif cmd.name == "help":
            await mail_agent(self.rt, self.session, t, self.agent, self.msg, kind="agent_notice",
                              template="agent_help",
                              context={"commands": describe_commands(
                                  self.settings.commands.prefix).splitlines(),
                                  "prefix": self.settings.commands.prefix})
        else:  # the parser knows a command this module does not: refuse, never guess
            raise Refused(f"{cmd.name} is not supported by mail")

    # -- single commands ------------------------------------------------------------------

    def _status_of_class(self, cls: str) -> str:
        for status in self.settings.tickets.statuses:
            if status.status_class == cls:
                return status.name
        raise Refused(f"no status of class {cls} is configured")

    async def _agent(self, who: str) -> Agent:
        if who == "me":
            return self.agent
        found = await find_agent_by_name(self.session, who)
        if found is None:
            raise Refused(f'no agent "{who}" (give an agent\'s email address or unique name)')
        if not found.is_active:
            raise Refused(f"{found.email} is not an active agent")
        return found

    def _due(self, text: str) -> Any:
        now = self.rt.clock()
        tz = self.settings.instance.zone
        due = parse_due(text, now, tz)
        if due is None:
            raise Refused(f'"{text}" is not a date this desk can use')
        if due <= now:
            raise Refused(f"{due:%Y-%m-%d %H:%M} UTC is in the past")
        return due

    def _away_until(self, text: str) -> Any:
        """``#away until`` a date: back at the start of that day (not at ``#due``'s 17:00)."""
        if "T" not in text and not text.startswith("+"):
            text = f"{text}T00:00"
        return self._due(text)

    async def _watch(self, emails: Sequence[str]) -> None:
        for email in emails:
            if await find_agent(self.session, email) is not None:
                raise Refused(f"{email} is an agent; agents follow tickets by assignment")
        for email in emails:
            contact = await get_or_create_contact(
                self.session, email, freemail=self.settings.tickets.freemail_domains)
            await self.service.add_watcher(self.ticket, contact, self.actor)

    async def _unwatch(self, emails: Sequence[str]) -> None:
        contacts: list[Contact] = []
        for email in emails:
            contact = (await self.session.execute(
                select(Contact).where(Contact.email == email))).scalar_one_or_none()
            if contact is None or await self.session.get(
                    Watcher, (self.ticket.id, contact.id)) is None:
                raise Refused(f"{email} is not watching {self.service.reference(self.ticket)}")
            contacts.append(contact)
        for contact in contacts:
            await self.service.remove_watcher(self.ticket, contact, self.actor)

    async def _link(self, verb: str, args: Sequence[str]) -> None:
        kind, svc = args[0], self.service
        if kind in URL_KINDS:
            url, title = args[1], args[2] if len(args) > 2 else ""
            if verb == "unlink":
                await svc.unlink(self.ticket, kind, self.actor, url=url)
            elif not await svc.link(self.ticket, kind, self.actor, url=url, title=title):
                raise Refused(f"{svc.reference(self.ticket)} already has that {kind} link")
            return
        other = await svc.get(int(args[1]))  # NotFoundError is a DomainError: reported
        if verb == "unlink":
            await svc.unlink(self.ticket, kind, self.actor, other=other)
        elif not await svc.link(self.ticket, kind, self.actor, other=other):
            raise Refused(f"{svc.reference(self.ticket)} is already linked to "
                          f"{svc.reference(other)}")

    async def _time(self, minutes: int, note: str) -> None:
        await self.service.log_time(self.ticket, self.agent, minutes, note, self.actor)

    async def _canned(self, shortcut: str) -> str:
        row = (await self.session.execute(select(CannedResponse).where(
            CannedResponse.shortcut == shortcut.lower()))).scalar_one_or_none()
        if row is None:
            raise Refused(f'no canned response "{shortcut}" (helpdesk canned list)')
        t, requester = self.ticket, self.ticket.requester
        return render_canned(
            row.body,
            ticket={"reference": self.service.reference(t), "number": t.number,
                    "subject": t.subject, "status": t.status, "priority": t.priority,
                    "category": t.category},
            requester={"name": requester.name, "email": requester.email,
                       "first_name": (requester.name.split() or [""])[0]},
            agent={"name": self.agent.name, "email": self.agent.email})

    # -- merge ----------------------------------------------------------------------------

    async def _merge(self, number: int) -> Ticket:
        source, svc = self.ticket, self.service
        target = await svc.get(number)  # NotFoundError is a DomainError: reported
        seen = {target.id}
        while target.merged_into_id is not None:
            nxt = await self.session.get(Ticket, target.merged_into_id)
            if nxt is None or nxt.id in seen:
                break
            seen.add(nxt.id)
            target = nxt
        if target.id == source.id:
            raise Refused("a ticket cannot be merged into itself")
        if source.merged_into_id is not None:
            raise Refused(f"{svc.reference(source)} is already merged")
        if svc.status_class(target.status) == "closed":
            raise Refused(f"{svc.reference(target)} is closed; reopen it first")
        await svc.merge(source, target, self.actor)
        return target
