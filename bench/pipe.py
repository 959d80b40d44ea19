"""How fast the command line starts, and what the MTA pipe (`helpdesk ingest`) delivers.

Run by hand, never as a test. It prints, for each source tree given (this checkout by
default; ``--src OTHER`` adds another, e.g. an older commit checked out with
``git worktree add /tmp/old <rev>``, run side by side in the same rounds):

- ``helpdesk --help``: median wall time of ``--runs`` starts;
- one small ``helpdesk ingest``: median wall time of ``--runs`` deliveries, each given
  ``--sender`` and ``--recipient`` as the README's Postfix, Exim and OpenSMTPD lines do;
- a serial pipe: ``--mails`` deliveries one after another, mails per second;
- ``--parallel`` pipes at once: ``--mails`` deliveries, mails per second.

Each tree is measured twice: the pipe handing each mail over to a running ``helpdesk
mailgate`` by LMTP (``[lmtp]`` on a Unix socket; the daemon runs only while its tree is
measured), and the pipe storing each mail itself (``--handover-only`` skips this slow
half). The interpreter's own install counts: run the bench with a venv's python that has
the project installed as the admin would (``pip install .``), or editable.

Each tree gets its own database (SQLite, created by ``helpdesk init``) in a temporary
folder; the interpreter is this one, importing the tree's own code (an editable install
of another checkout is bypassed), byte-compiled first as an install would be.

    python bench/pipe.py [--mails 500] [--parallel 8] [--runs 15] [--src DIR ...]
                         [--handover-only]
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
PACKAGES = ("helpdesk", "mailgate", "responders", "sla_daemon", "portal_lite")
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
        # Byte-compiled first, as `pip install` leaves an install: a process per mail
        # would otherwise compile every module it imports (PYTHONDONTWRITEBYTECODE).
        subprocess.run([sys.executable, "-m", "compileall", "-q",
                        *(str(src / p) for p in PACKAGES if (src / p).is_dir())], check=True)
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


def deliver(tree: Tree, n: int) -> float:
    """One delivery as the README's master.cf line makes it: the envelope on the command
    line, the mail on stdin."""
    return tree.run("ingest", "--sender", f"c{n % 50}@example.org",
                    "--recipient", "support@support.example.com", stdin=mail(n))


def measure(tree: Tree, mails: int, parallel: int, runs: int) -> dict[str, float]:
    help_s = statistics.median(tree.run("--help") for _ in range(runs))
    one_s = statistics.median(deliver(tree, -i) for i in range(1, runs + 1))
    started = time.perf_counter()
    for n in range(mails):
        deliver(tree, n)
    serial = mails / (time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda n: deliver(tree, mails + n), range(mails)))
    par = mails / (time.perf_counter() - started)
    return {"help_ms": help_s * 1000, "ingest_ms": one_s * 1000, "serial": serial,
            "parallel": par}


def floor_of(mails: int, parallel: int, runs: int) -> dict[str, float]:
    """The interpreter alone, started the same way: how fast this machine is right now
    (a shared machine's speed drifts; read the trees' figures against this row)."""
    def bare() -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], input=mail(0), capture_output=True,
                       check=True)
        return time.perf_counter() - started

    one = statistics.median(bare() for _ in range(runs))
    started = time.perf_counter()
    for _ in range(mails):
        bare()
    serial = mails / (time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda _: bare(), range(mails)))
    return {"ingest_ms": one * 1000, "serial": serial,
            "parallel": mails / (time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--src", action="append", default=[], type=Path,
                        help="another source tree to measure beside this one")
    parser.add_argument("--handover-only", action="store_true",
                        help="measure only the pipe handing over (storing itself is slow)")
    args = parser.parse_args()
    sources = [REPO, *(src.resolve() for src in args.src)]
    plans = [(src, True) for src in sources]
    if not args.handover_only:
        plans += [(src, False) for src in sources]
    print(f"{'tree':<52} {'--help ms':>10} {'ingest ms':>10} {'serial/s':>9} "
          f"{args.parallel:>2} par/s")
    floor = floor_of(args.mails, args.parallel, args.runs)
    print(f"{'python -c pass (the floor: no code of ours)':<52} {'':>10} "
          f"{floor['ingest_ms']:>10.0f} {floor['serial']:>9.1f} {floor['parallel']:>8.1f}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (src, handover) in enumerate(plans):
            tree = Tree(src, Path(tmp) / f"t{i}", handover=handover)
            try:
                r = measure(tree, args.mails, args.parallel, args.runs)
            finally:
                tree.close()
            print(f"{tree.label:<52} {r['help_ms']:>10.0f} {r['ingest_ms']:>10.0f} "
                  f"{r['serial']:>9.1f} {r['parallel']:>8.1f}", flush=True)

if __name__ == "__main__":
    main()
