"""2,000 hostile variants of the shared corpus through the real gateway: stored, never lost.

Issue 19's fuzz acceptance. The mutations (``tests/fuzzmail.py``: truncations, byte flips,
duplicated and deleted headers, broken boundaries, bad charsets and transfer encodings,
encoded words that decode to surrogates or NULs, hostile filenames, over-long values) go
through `Gateway.ingest` as the MTA pipe delivers them, into one SQLite database. Every
one must be stored (exit 0), or refused as not mail (exit 65) only when it has no header
block; none may raise, log an error, or be quarantined when the email package reads it.
A longer run, by hand and on PostgreSQL too: ``python bench/fuzz.py``.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from helpdesk.runtime import Runtime
from mailgate.service import make_gateway
from tests.conftest import make_settings, sqlite_url
from tests.fuzzmail import ingest_all, mutations

COUNT = 2000
SEED = 19


async def test_two_thousand_mutated_corpus_mails_are_all_stored(
        tmp_path: Path, corpus: Path) -> None:
    rt = await Runtime.open(make_settings(tmp_path, sqlite_url(tmp_path)))
    try:
        with structlog.testing.capture_logs() as logs:
            tally = await ingest_all(make_gateway(rt), mutations(corpus, COUNT, SEED))
    finally:
        await rt.close()
    errors = [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e]
    assert tally.failures == [], "\n".join(tally.failures[:30])
    assert errors == [], errors[:10]
    assert sum(tally.outcomes.values()) == COUNT
    assert tally.outcomes["ticket"] > COUNT // 5  # the mutations still look like real mail
