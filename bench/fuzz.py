"""Fuzz the inbound gateway by hand: N mutations of the shared corpus through Gateway.ingest.

    python bench/fuzz.py [--mutations 20000] [--seed 19] [--show 20] [--postgres]

The same mutations as the CI test ``tests/integration/test_fuzz.py`` (``tests/fuzzmail.py``),
more of them, into one fresh SQLite database in a temporary directory (``--postgres``: a
fresh database on the PostgreSQL server at 127.0.0.1:5432, dropped afterwards). Prints how many
mails ended as each outcome and every failure: an exception out of ``Gateway.ingest``, or
a quarantined mail that the email package parses. Exit status 1 when there was a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from helpdesk.config import LoggingSettings  # noqa: E402
from helpdesk.logs import configure_logging  # noqa: E402
from helpdesk.runtime import Runtime  # noqa: E402
from mailgate.service import make_gateway  # noqa: E402
from tests.conftest import CORPUS, PG_ADMIN_DSN, _pg_admin, make_settings, sqlite_url  # noqa: E402
from tests.fuzzmail import ingest_all, mutations  # noqa: E402


async def main(count: int, seed: int, show: int, postgres: bool) -> int:
    configure_logging(LoggingSettings(level="CRITICAL"))  # failures are counted, not logged
    pg_name = f"helpdesk_fuzz_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp:
        url = sqlite_url(Path(tmp))
        if postgres:
            await _pg_admin(f'CREATE DATABASE "{pg_name}"')
            url = PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://").rsplit(
                "/", 1)[0] + f"/{pg_name}"
        rt = await Runtime.open(make_settings(Path(tmp), url))
        try:
            started = time.perf_counter()
            tally = await ingest_all(make_gateway(rt), mutations(CORPUS, count, seed))
            took = time.perf_counter() - started
        finally:
            await rt.close()
            if postgres:
                await _pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    print(f"{count} mutations, seed {seed}, {took:.0f} s ({count / took:.0f} mails/s)")
    for outcome, n in sorted(tally.outcomes.items()):
        print(f"  {outcome:<20} {n}")
    print(f"  failures             {len(tally.failures)}")
    for line in tally.failures[:show]:
        print("   ", line)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--show", type=int, default=20, help="failures to print")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL, not SQLite")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.mutations, args.seed, args.show, args.postgres)))
