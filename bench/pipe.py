"""How fast the command line starts, and what the MTA pipe (`helpdesk ingest`) delivers.

Run by hand, never as a test. It prints, for each source tree given (this checkout by
default; ``--src OTHER`` adds another, e.g. an older commit checked out with
``git worktree add /tmp/old <rev>``, run side by side in the same rounds):

- ``helpdesk --help``: median wall time of ``--runs`` starts;
- one small ``helpdesk ingest``: median wall time of ``--runs`` deliveries;
- a serial pipe: ``--mails`` deliveries one after another, mails per second;
- ``--parallel`` pipes at once: ``--mails`` deliveries, mails per second.

This checkout is measured twice: the pipe storing each mail itself, and the pipe handing
it over to a running ``helpdesk mailgate`` by LMTP (``[lmtp]`` on a Unix socket). Other
trees are measured storing the mail themselves.

Each tree gets its own database (SQLite, created by ``helpdesk init``) in a temporary
folder; the interpreter is this one, importing the tree's own code (an editable install
of another checkout is bypassed).

    python bench/pipe.py [--mails 500] [--parallel 8] [--runs 15] [--src DIR ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `python -m helpdesk` for the tree in argv[1], whatever is installed: an editable
# install's import hook would otherwise win over PYTHONPATH and run this checkout.
LAUNCH = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
          "if 'editable' not in getattr(f, '__module__', '') + repr(f)]; "
          "src = sys.argv.pop(1); sys.path.insert(0, src); sys.argv[0] = 'helpdesk'; "
          "from helpdesk.cli import main; main()")


def mail(n: int) -> bytes:
    return (f"From: Customer {n} <c{n % 50}@example.org>\r\n"
            f"To: support@support.example.com\r\nSubject: Printer {n} on fire\r\n"
            f"Message-ID: <bench-{n}-{time.time_ns()}@example.org>\r\n"
            f"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n\r\nIt burns, {n}.\r\n").encode()


class Tree:
    """One source tree with its own config and database."""

    def __init__(self, src: Path, work: Path, *, handover: bool = False) -> None:
        self.src, self.handover = src, handover
        work.mkdir(parents=True)
        self.cfg = work / "helpdesk.toml"
        self.socket = work / "lmtp.sock"
        self.cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{work}/hd.db"\n'
                            f'[storage]\ndir = "{work}/data"\n[logging]\nlevel = "WARNING"\n'
                            + (f'[smtp]\nport = 0\n[lmtp]\nenabled = true\n'
                               f'socket = "{self.socket}"\n' if handover else ""),
                            encoding="utf-8")
        self.env = {**os.environ, "HELPDESK_CONFIG": str(self.cfg)}
        self.run("init")
        self.daemon: subprocess.Popen[bytes] | None = None
        if handover:
            self.daemon = subprocess.Popen([sys.executable, "-c", LAUNCH, str(src), "mailgate"],
                                           env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while not self.socket.exists():
                if self.daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("helpdesk mailgate did not open its LMTP socket")
                time.sleep(0.1)

    @property
    def label(self) -> str:
        return f"{self.src}" + (" (hand-over)" if self.handover else "")

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            self.daemon.wait(timeout=60)

    def run(self, *args: str, stdin: bytes = b"") -> float:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", LAUNCH, str(self.src), *args], input=stdin,
                              env=self.env, capture_output=True, timeout=300)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{self.src}: helpdesk {' '.join(args)} exited "
                             f"{done.returncode}: {done.stderr.decode()[-500:]}")
        return elapsed


def measure(tree: Tree, mails: int, parallel: int, runs: int) -> dict[str, float]:
    help_s = statistics.median(tree.run("--help") for _ in range(runs))
    one_s = statistics.median(tree.run("ingest", stdin=mail(-i)) for i in range(1, runs + 1))
    started = time.perf_counter()
    for n in range(mails):
        tree.run("ingest", stdin=mail(n))
    serial = mails / (time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda n: tree.run("ingest", stdin=mail(mails + n)), range(mails)))
    par = mails / (time.perf_counter() - started)
    return {"help_ms": help_s * 1000, "ingest_ms": one_s * 1000, "serial": serial,
            "parallel": par}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--src", action="append", default=[], type=Path,
                        help="another source tree to measure beside this one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = [Tree(REPO, Path(tmp) / "handover", handover=True),
                 *(Tree(src.resolve(), Path(tmp) / f"t{i}")
                   for i, src in enumerate([REPO, *args.src]))]
        print(f"{'tree':<52} {'--help ms':>10} {'ingest ms':>10} {'serial/s':>9} "
              f"{args.parallel:>2} par/s")
        try:
            for tree in trees:
                r = measure(tree, args.mails, args.parallel, args.runs)
                print(f"{tree.label:<52} {r['help_ms']:>10.0f} {r['ingest_ms']:>10.0f} "
                      f"{r['serial']:>9.1f} {r['parallel']:>8.1f}", flush=True)
        finally:
            for tree in trees:
                tree.close()


if __name__ == "__main__":
    main()
