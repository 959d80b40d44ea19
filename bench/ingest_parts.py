"""Benchmark: where a gateway's time per mail goes, in-process (no SMTP), in one run.

    python bench/ingest_parts.py [--mails 2000]

Prints milliseconds per mail for:

* ``parse``: `mailgate.parse.parse_keyed` (the parse and the dedupe key) alone;
* ``gateway``: `Gateway.ingest` with 8 concurrent callers on SQLite (blob store, group
  commit, every row of the ticket through `TicketService`, its events and the
  notifier), as `helpdesk mailgate` runs it minus the SMTP layer;
* ``orm floor``: only the ORM inserts of the rows a new ticket writes (ticket, message,
  two message references, outbox row, three audit events), one flush per mail and one
  flush per eight mails, no lookups, no parsing.

It explains `bench/ingest.py`'s figure: the SMTP-to-ticket rate is bounded by the
gateway's per-mail CPU on the one SQLite writer, not by fsync. With ``--profile`` it also
prints the gateway run's CPU time by library (cProfile; the run itself is slower then).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import RCPT, generate

from helpdesk.config import load_settings
from helpdesk.models import (
    AuditEvent,
    Base,
    Contact,
    Message,
    MessageRef,
    OutboxRow,
    Ticket,
)
from helpdesk.runtime import Runtime
from mailgate.ingest import Gateway
from mailgate.parse import parse_keyed


def parse_cost(mails: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in mails:
        parse_keyed(raw)
    return (time.perf_counter() - start) / len(mails) * 1000


async def gateway_cost(mails: list[tuple[str, bytes, int | None]], root: Path) -> float:
    root.mkdir(exist_ok=True)
    cfg = root / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{root / "h.db"}"\n'
                   f'[storage]\ndir = "{root / "data"}"\n[logging]\nlevel = "WARNING"\n')
    rt = await Runtime.open(load_settings(cfg, environ={}))
    gateway = Gateway(rt)
    queue = list(reversed(mails))

    async def caller() -> None:
        while queue:
            sender, raw, _ = queue.pop()
            await gateway.ingest(raw, "smtp", recipients=[RCPT], envelope_sender=sender)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(8)))
    elapsed = time.perf_counter() - start
    await rt.close()
    return elapsed / len(mails) * 1000


def orm_floor(n: int, per_flush: int, root: Path) -> float:
    engine = create_engine(f"sqlite:///{root / f'floor{per_flush}.db'}")
    Base.metadata.create_all(engine)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        contact = Contact(email="a@example.org", name="", role="member",
                          is_undeliverable=False, undeliverable_reason="")
        session.add(contact)
        session.flush()
        start = time.perf_counter()
        for i in range(1, n + 1):
            session.add(Ticket(id=i, number=i, subject="s", status="Open", priority="normal",
                               category="general", channel="email", queue="",
                               requester_id=contact.id, link_secret="x", sla_next_at=now,
                               created_at=now, updated_at=now))
            session.add(Message(id=i, ticket_id=i, kind="public", author_contact_id=contact.id,
                                via="smtp", message_id=f"<{i}@x>", subject="s", text="t" * 800,
                                full_text="t" * 800, created_at=now))
            session.add(MessageRef(message_id=f"<{i}@x>", ticket_id=i, direction="in"))
            session.add(OutboxRow(kind="ack", template="acknowledgement", ticket_id=i,
                                  about_message_id=i, to_addr="a@example.org",
                                  recipients=["a@example.org"], message_id=f"<o{i}@x>",
                                  references=[], context={}, status="pending", attempts=0,
                                  created_at=now, next_attempt_at=now))
            session.add(MessageRef(message_id=f"<o{i}@x>", ticket_id=i, direction="out"))
            for action in ("ticket.created", "message.public", "ticket.threading"):
                session.add(AuditEvent(ticket_id=i, actor="contact:a@example.org", action=action,
                                       after={"number": i}, reason="", created_at=now))
            if i % per_flush == 0:
                session.flush()
        session.flush()
        return (time.perf_counter() - start) / n * 1000


def cpu_by_library(profile: cProfile.Profile) -> list[tuple[str, float]]:
    """Share of profiled CPU time per library (SQLAlchemy by subpackage), largest first."""
    shares: dict[str, float] = {}
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (path, _, name), (_, _, own, _, _) in stats.items():
        if "/sqlalchemy/" in path:
            key = "sqlalchemy." + path.split("/sqlalchemy/")[1].split("/")[0]
        elif path == "~":
            key = "sqlite3 (C)" if "sqlite3" in name else "builtins, greenlet (C)"
        elif "/email/" in path:
            key = "stdlib email"
        elif "asyncio" in path:
            key = "asyncio"
        elif any(f"/{pkg}/" in path for pkg in ("helpdesk", "mailgate", "bench")):
            key = "helpdesk (ours)"
        else:
            key = "other"
        shares[key] = shares.get(key, 0.0) + own
    total = sum(shares.values()) or 1.0
    return sorted(((k, v / total) for k, v in shares.items()), key=lambda kv: -kv[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=2000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    mails = generate(args.mails, 0.2)
    with tempfile.TemporaryDirectory(prefix="hd-parts-") as tmp:
        root = Path(tmp)
        print(f"{len(mails)} mails, ms per mail")
        print(f"parse + dedupe key          {parse_cost([m[1] for m in mails]):6.3f}")
        gateway = asyncio.run(gateway_cost(mails, root / "gateway"))
        print(f"gateway (no SMTP)           {gateway:6.3f}")
        print(f"orm floor, flush per mail   {orm_floor(args.mails, 1, root):6.3f}")
        print(f"orm floor, flush per 8      {orm_floor(args.mails, 8, root):6.3f}")
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            asyncio.run(gateway_cost(mails, root / "profiled"))
            profile.disable()
            print("gateway CPU by library (profiled run):")
            for name, share in cpu_by_library(profile):
                print(f"  {share * 100:5.1f}%  {name}")


if __name__ == "__main__":
    main()
