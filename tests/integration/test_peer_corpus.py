"""Every mail of another help desk's test suite through the real gateway: stored, unharmed.

Issue 20's acceptance run: the 116 files of ``../shared/peer-corpus/zammad/`` (odd
charsets, broken header blocks, mixed HTML and text) go through `Gateway.ingest` as the
MTA pipe delivers them (strict), into one SQLite database. Each must be stored (exit 0)
without an exception or an error logged, and none quarantined when the email package reads
it; the mixed and Japanese mails keep their words on the ticket. What each mail reads as
is checked without a database in ``tests/unit/test_corpus_readings.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from sqlalchemy import select

from helpdesk.models import Message, Ticket
from helpdesk.runtime import Runtime
from mailgate.service import make_gateway
from tests.conftest import IN_CI, make_settings, sqlite_url
from tests.fuzzmail import ingest_all

PEER = Path(__file__).resolve().parents[2].parent / "shared" / "peer-corpus" / "zammad"


@pytest.fixture
def peer_corpus() -> list[tuple[str, bytes]]:
    files = sorted(PEER.glob("*.box"))
    if not files:
        if IN_CI:
            pytest.fail(f"the peer corpus is not at {PEER}")
        pytest.skip(f"the peer corpus is not at {PEER}")
    return [(p.name, p.read_bytes()) for p in files]


async def test_every_peer_corpus_mail_is_stored_with_its_words(
        tmp_path: Path, peer_corpus: list[tuple[str, bytes]]) -> None:
    rt = await Runtime.open(make_settings(tmp_path, sqlite_url(tmp_path)))
    try:
        with structlog.testing.capture_logs() as logs:
            tally = await ingest_all(make_gateway(rt), peer_corpus)
        async with rt.sessions() as session:
            subjects = set((await session.execute(select(Ticket.subject))).scalars())
            texts = "\n".join((await session.execute(select(Message.text))).scalars())
    finally:
        await rt.close()
    errors = [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e]
    assert tally.failures == [], "\n".join(tally.failures)
    assert errors == [], errors[:10]
    assert sum(tally.outcomes.values()) == len(peer_corpus)
    assert {"A HTML email with text signature", "Contact from Server", "AW: One Net Business",
            "ツール", "转发：整体提升企业服务水平"} <= subjects
    assert "This is the html message" in texts  # mail111: the HTML before a text part
    assert "これはテストメールです。" in texts  # mail116: unlabelled ISO-2022-JP
    assert "①" in texts  # mail099: the NEC extension row
