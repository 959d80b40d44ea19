"""Who is told what: `helpdesk.notify.notices` is a pure function, checked for any event."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from helpdesk.audit import Actor
from helpdesk.config import Settings
from helpdesk.events import (
    Assigned,
    MessageAdded,
    MessageFacts,
    SlaBreached,
    StatusChanged,
    TicketCreated,
    TicketEvent,
    TicketFacts,
    audit_values,
)
from helpdesk.notify import Notice, Participants, Staff, notices
from tests.conftest import make_settings, sqlite_url

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
STATUSES = ["Open", "In Progress", "Pending", "Resolved", "Closed"]


def _settings() -> Settings:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="hd-notices-"))
    return make_settings(tmp, sqlite_url(tmp))


SETTINGS = _settings()

staff = st.builds(Staff, id=st.integers(1, 6), email=st.sampled_from(
    [f"agent{n}@support.example.com" for n in range(1, 7)]), is_active=st.booleans(),
    notify_new_ticket=st.booleans(), notify_reply=st.booleans(),
    notify_assignment=st.booleans(), notify_status=st.booleans())
people = st.builds(
    Participants, agents=st.lists(staff, max_size=6).map(tuple),
    requester=st.sampled_from([None, "alice@example.org"]),
    watchers=st.lists(st.sampled_from(["dave@example.org", "erin@example.net"]),
                      unique=True).map(tuple))
actors = st.one_of(
    st.builds(Actor, kind=st.just("agent"), label=st.sampled_from(
        [f"agent{n}@support.example.com" for n in range(1, 4)]), id=st.integers(1, 3)),
    st.builds(Actor, kind=st.just("contact"), label=st.just("alice@example.org")),
    st.just(Actor("system", "helpdesk")))
tickets = st.builds(TicketFacts, id=st.just(1), number=st.just(1), queue=st.just(""),
                    status=st.sampled_from(STATUSES), priority=st.just("normal"),
                    category=st.just("general"), requester_id=st.just(1),
                    assignee_id=st.one_of(st.none(), st.integers(1, 6)),
                    subject=st.just("Printer"))
messages = st.builds(MessageFacts, id=st.integers(1, 99),
                     kind=st.sampled_from(["public", "internal", "system"]),
                     author_contact_id=st.one_of(st.none(), st.just(1)),
                     author_agent_id=st.one_of(st.none(), st.integers(1, 6)),
                     message_id=st.just("<m@example.org>"))


@st.composite
def events(draw: st.DrawFn) -> TicketEvent:
    ticket, actor = draw(tickets), draw(actors)
    kind = draw(st.sampled_from(["created", "message", "status", "assigned"]))
    if kind == "created":
        return TicketCreated(ticket, actor, AT, message=draw(messages))
    if kind == "message":
        return MessageAdded(ticket, actor, AT, message=draw(messages))
    if kind == "status":
        return StatusChanged(ticket, actor, AT, name="status",
                             before=draw(st.sampled_from(STATUSES)), after=ticket.status)
    return Assigned(ticket, actor, AT, name="assignee", before=None, after="agent@x")


@given(events(), people)
def test_notices_keep_the_promises(event: TicketEvent, who: Participants) -> None:
    told = notices(event, who, SETTINGS)
    agents = {a.email: a for a in who.agents}
    requester_side = {a for a in (who.requester, *who.watchers) if a}
    message = getattr(event, "message", None)
    for notice in told:
        assert isinstance(notice, Notice)
        if notice.agent is not None:  # an agent notice
            assert notice.kind == "agent_notice" and notice.to in agents
            assert notice.agent.is_active, "an inactive agent was told"
            assert not (event.actor.kind == "agent" and notice.to == event.actor.label), \
                "the agent who acted was told of their own change"
            assignee = event.ticket.assignee_id
            assert assignee is None or notice.agent.id == assignee
        else:  # mail to the requester's side
            assert notice.to in requester_side and notice.threaded
            assert notice.kind in ("reply", "resolved")
    if isinstance(event, MessageAdded) and message is not None and message.kind != "public":
        assert told == [], "an internal note or system message was mailed"
    if isinstance(event, MessageAdded) and message is not None and message.by_agent \
            and message.kind == "public":
        assert {n.to for n in told} == requester_side and len(told) == len(requester_side)
    if isinstance(event, StatusChanged):
        resolved = [n for n in told if n.kind == "resolved"]
        wanted = SETTINGS.status_class(event.after) == "resolved" and who.requester
        assert len(resolved) == (1 if wanted else 0)


def test_an_agent_notice_names_the_change_as_the_history_does() -> None:
    ticket = TicketFacts(1, 1, "", "Pending", "normal", "general", 1, None, "Printer")
    event = StatusChanged(ticket, Actor("contact", "alice@example.org"), AT, name="status",
                          before="Open", after="Pending")
    who = Participants((Staff(1, "bob@support.example.com"),), "alice@example.org")
    [notice] = notices(event, who, SETTINGS)
    [row] = audit_values(event)
    assert (notice.action, notice.before, notice.after) == (
        row["action"], row["before"], row["after"]) == (
        "ticket.status", {"status": "Open"}, {"status": "Pending"})


def test_an_sla_breach_goes_to_whom_the_policy_escalates_with_an_internal_reply_address() -> None:
    ticket = TicketFacts(1, 42, "", "Open", "high", "general", 1, 2, "Printer")
    event = SlaBreached(ticket, Actor("system", "sla"), AT, clock="first_response",
                        policy="gold", to=("bob@support.example.com", "admin@example.net"),
                        as_of=AT, due_at=AT, target_minutes=60, elapsed_minutes=61.5)
    who = Participants((Staff(1, "carol@support.example.com"),
                        Staff(2, "bob@support.example.com", is_active=False)))
    [notice] = notices(event, who, SETTINGS)
    assert (notice.kind, notice.to, notice.also) == (
        "sla_breach", "bob@support.example.com", ("admin@example.net",))
    assert notice.internal and notice.agent is not None and notice.agent.id == 2
    assert notice.context["ticket"] == "TKT-000042"
    assert notice.context["clock_label"] == "first response"
    [row] = audit_values(event)
    assert (row["action"], row["after"]["to"]) == (
        "sla.breach", ["bob@support.example.com", "admin@example.net"])
    assert notices(SlaBreached(ticket, Actor("system", "sla"), AT, to=()), who, SETTINGS) == []
