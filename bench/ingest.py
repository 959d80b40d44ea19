"""Benchmark: SMTP to committed ticket, side by side with two aiosmtpd baselines, in one run.

    python bench/ingest.py [--mails 2000] [--clients 8] [--replies 0.2] [--rounds 5]
                           [--baseline-loop asyncio|uvloop] [--src OTHER_TREE]
                           [--rules N]

Runs three servers as separate processes on loopback, one after the other, and feeds each
the same generated mail from the same client (8 concurrent SMTP connections). The three
alternate for ``--rounds`` rounds and the medians are compared, because a shared 2-core
machine's speed drifts from one minute to the next:

* ``bare``:    aiosmtpd whose handler only answers 250 (the protocol's ceiling);
* ``fsync``:   aiosmtpd that writes each message to a file and fsyncs it before 250
               (the floor for durable acceptance);
* ``helpdesk``: `helpdesk mailgate` on SQLite: spool + parse + thread + commit before 250.

The baselines run on asyncio's own loop, as aiosmtpd's ``Controller`` does; the gateway
runs on uvloop (``[instance] event_loop = "auto"``). ``--baseline-loop uvloop`` puts the
baselines on uvloop too, for the comparison on equal loops.

Then it sends one 25 MB message to a fresh gateway and reports how far its memory grew.
Prints mails/s and the server's CPU time per mail for each run (steadier than the rate
on a noisy machine, and what bounds the gateway: its event loop), the medians and their
ratio to the fsync baseline, and the gateway's peak RSS over all rounds. ``--src`` adds a
fourth server to every round, the gateway run from another source tree (a worktree of an
earlier commit), so a change is measured before and after on the same minute's machine;
``--rules N`` adds this tree's gateway with N auto-assignment rules (N - 1 that match no
bench mail, then a round robin over three agents), for the cost of rules per mail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import psutil

RCPT = "support@support.example.com"
PACKAGES = ("helpdesk", "mailgate", "responders", "sla_daemon", "portal_lite")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def generate(n: int, reply_share: float) -> list[tuple[str, bytes, int | None]]:
    """(sender, raw, index of the mail it answers) for n mails, ``reply_share`` replies."""
    mails: list[tuple[str, bytes, int | None]] = []
    n_replies = int(n * reply_share)
    originals: list[tuple[str, str]] = []
    for i in range(n):
        is_reply = i >= 100 and len(mails) - len(originals) < n_replies and i % 5 == 4
        msg = EmailMessage()
        if is_reply:
            j = (i * 7919) % max(1, len(originals) - 50)
            sender, mid = originals[j]
            msg["Subject"] = f"Re: question {j}"
            msg["In-Reply-To"] = mid
            msg["References"] = mid
            parent: int | None = j
        else:
            sender = f"customer{i}@example{i % 50}.org"
            msg["Subject"] = f"question {len(originals)}"
            parent = None
        msg["From"] = f"Customer {i} <{sender}>"
        msg["To"] = RCPT
        mid = f"<bench.{i}.{os.getpid()}@example.org>"
        msg["Message-ID"] = mid
        msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
        msg.set_content(f"Hello,\n\nthis is mail {i}. " + "Some words of text. " * 40
                        + "\n\nRegards,\nCustomer\n")
        if not is_reply:
            originals.append((sender, mid))
        mails.append((sender, msg.as_bytes(), parent))
    return mails


async def feed(port: int, mails: list[tuple[str, bytes, int | None]], clients: int) -> float:
    """Send all mails over ``clients`` connections; returns elapsed seconds."""
    queue: asyncio.Queue[tuple[str, bytes, int | None]] = asyncio.Queue()
    for m in mails:
        queue.put_nowait(m)

    async def client() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
        await smtp.connect()
        try:
            while not queue.empty():
                sender, raw, _ = queue.get_nowait()
                for attempt in range(20):
                    try:
                        await smtp.sendmail(sender, [RCPT], raw)
                        break
                    except aiosmtplib.SMTPResponseException as exc:
                        if exc.code >= 500 or attempt == 19:
                            raise
                        await asyncio.sleep(0.05)
        finally:
            await smtp.quit()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start_baseline(kind: str, port: int, spool: Path,
                   loop: str = "asyncio") -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port),
                             "--spool", str(spool), "--baseline-loop", loop])


def rules_toml(n: int) -> str:
    """``n`` assignment rules: ``n - 1`` that match no bench mail, then round robin."""
    agents = [f"agent{k}@support.example.com" for k in range(3)]
    text = f'[[teams]]\nname = "support"\nmembers = {agents!r}\n'.replace("'", '"')
    for k in range(n - 1):
        text += (f'[[assignment]]\nname = "rule {k}"\n'
                 f'when = {{ subject = "/never-{k}-(here|there)/", '
                 f'sender_domain = "x{k}.example" }}\n'
                 f'assign = "{agents[k % 3]}"\n')
    return text + '[[assignment]]\nname = "in turn"\nteam = "support"\n'


def start_gateway(workdir: Path, port: int, src: Path | None = None, rules: int = 0,
                  agents: bool = False) -> subprocess.Popen[bytes]:
    cfg = workdir / "helpdesk.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{workdir / "helpdesk.db"}"\n'
        f'[storage]\ndir = "{workdir / "data"}"\n'
        f'[smtp]\nport = {port}\nmax_message_bytes = 30000000\n'
        '[logging]\nlevel = "WARNING"\n' + (rules_toml(rules) if rules else ""))
    env = dict(os.environ)
    if src is not None:  # another tree's code (PYTHONPATH comes before the installed one)
        env["PYTHONPATH"] = str(src)
    # cwd: `python -m` puts the working folder first on sys.path, which would beat --src
    subprocess.run([sys.executable, "-m", "helpdesk", "--config", str(cfg), "init"],
                   check=True, capture_output=True, env=env, cwd=workdir)
    for k in range(3 if rules or agents else 0):
        subprocess.run([sys.executable, "-m", "helpdesk", "--config", str(cfg), "agents", "add",
                        f"agent{k}@support.example.com"], check=True, capture_output=True,
                       env=env, cwd=workdir)
    return subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", str(cfg),
                             "mailgate"], cwd=workdir, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_one(label: str, proc: subprocess.Popen[bytes], port: int,
            mails: list[tuple[str, bytes, int | None]], clients: int
            ) -> tuple[float, int, float]:
    wait_port(port, proc)
    server = psutil.Process(proc.pid)
    before = server.cpu_times()
    elapsed = asyncio.run(feed(port, mails, clients))
    after = server.cpu_times()
    peak = memory_kb(proc.pid, "VmHWM")
    stop(proc)
    rate = len(mails) / elapsed
    cpu = (after.user + after.system - before.user - before.system) / len(mails) * 1000
    print(f"{label:<10} {len(mails)} mails in {elapsed:6.2f} s = {rate:7.1f} mails/s, "
          f"server CPU {cpu:5.2f} ms/mail, peak RSS {peak / 1024:6.1f} MB", flush=True)
    return rate, peak, cpu


def big_message_growth(workdir: Path) -> tuple[float, float]:
    port = free_port()
    proc = start_gateway(workdir, port)
    wait_port(port, proc)
    asyncio.run(feed(port, generate(20, 0.0), 1))  # warm up imports and the database
    before = memory_kb(proc.pid, "VmRSS")
    msg = EmailMessage()
    msg["From"] = "big@example.org"
    msg["To"] = RCPT
    msg["Subject"] = "25 MB attachment"
    msg["Message-ID"] = "<big.1@example.org>"
    msg.set_content("see attachment")
    msg.add_attachment(os.urandom(19 * 1024 * 1024), maintype="application",  # 25.6 MB as base64
                       subtype="octet-stream", filename="big.bin")
    raw = msg.as_bytes()
    elapsed = asyncio.run(feed(port, [("big@example.org", raw, None)], 1))
    peak = memory_kb(proc.pid, "VmHWM")
    stop(proc)
    print(f"big mail   {len(raw) / 2**20:.1f} MB accepted in {elapsed:.2f} s; gateway RSS "
          f"before {before / 1024:.1f} MB, peak {peak / 1024:.1f} MB, "
          f"growth {(peak - before) / 1024:.1f} MB", flush=True)
    return len(raw) / 2**20, (peak - before) / 1024


def serve_baseline(kind: str, port: int, spool: Path, loop: str) -> None:
    from aiosmtpd.controller import Controller

    spool.mkdir(parents=True, exist_ok=True)
    counter = iter(range(10**9))

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            if kind == "fsync":
                path = spool / f"{next(counter)}.eml"
                with open(path, "wb") as fh:
                    fh.write(envelope.original_content or envelope.content)
                    fh.flush()
                    os.fsync(fh.fileno())
            return "250 OK"

    if loop == "uvloop":
        import uvloop

        extra = {"loop": uvloop.new_event_loop()}
    else:
        extra = {}
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **extra,
                            data_size_limit=30_000_000)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--replies", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternate the three servers this many times; medians are compared")
    ap.add_argument("--baseline-loop", choices=["asyncio", "uvloop"], default="asyncio",
                    help="event loop of the two aiosmtpd baselines (the gateway's is "
                         "[instance] event_loop, uvloop where installed)")
    ap.add_argument("--src", type=Path,
                    help="also run the gateway from this source tree (e.g. a worktree of an "
                         "earlier commit) in every round, for a before/after comparison")
    ap.add_argument("--rules", type=int, default=0,
                    help="also run this tree's gateway with this many assignment rules "
                         "configured (all but the last match no mail) in every round")
    ap.add_argument("--serve", choices=["bare", "fsync"])
    ap.add_argument("--port", type=int)
    ap.add_argument("--spool", type=Path)
    args = ap.parse_args()
    if args.serve:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_baseline(args.serve, args.port, args.spool, args.baseline_loop)
        return
    # Byte-compiled first, as `pip install` leaves an install: with PYTHONDONTWRITEBYTECODE
    # set, a module first imported while mail flows would be compiled inside the figure.
    here = Path(__file__).resolve().parents[1]
    for tree in {here, *([args.src.resolve()] if args.src else [])}:
        subprocess.run([sys.executable, "-m", "compileall", "-q",
                        *(str(tree / p) for p in PACKAGES if (tree / p).is_dir())], check=True)
    mails = generate(args.mails, args.replies)
    replies = sum(1 for m in mails if m[2] is not None)
    print(f"{len(mails)} mails ({replies} replies), {args.clients} client connections, "
          f"{args.rounds} round(s) of bare, fsync, helpdesk; baselines on {args.baseline_loop}")
    rates: dict[str, list[float]] = {"bare": [], "fsync": [], "helpdesk": []}
    cpus: dict[str, list[float]] = {"helpdesk": []}
    if args.src:
        rates["before"], cpus["before"] = [], []
    if args.rules:
        rates["rules"], cpus["rules"] = [], []
    peak = 0
    with tempfile.TemporaryDirectory(prefix="hd-bench-") as tmp:
        root = Path(tmp)
        for n in range(args.rounds):
            for kind in ("bare", "fsync"):
                port = free_port()
                server = start_baseline(kind, port, root / f"{kind}{n}", args.baseline_loop)
                rate, _, _ = run_one(kind, server, port, mails, args.clients)
                rates[kind].append(rate)
            for label, src, count in (("before", args.src, 0), ("helpdesk", None, 0),
                                      ("rules", None, args.rules)):
                if label not in rates:
                    continue
                (root / f"{label}{n}").mkdir()
                port = free_port()
                # with --rules, the run without rules has the same three agents (and
                # their notifications), so the difference is what the rules cost
                gateway = start_gateway(root / f"{label}{n}", port, src, count,
                                        agents=bool(args.rules))
                rate, gw_peak, cpu = run_one(label, gateway, port, mails, args.clients)
                rates[label].append(rate)
                cpus[label].append(cpu)
                if label == "helpdesk":
                    peak = max(peak, gw_peak)
        (root / "big").mkdir()
        size, growth = big_message_growth(root / "big")
    bare, fsync, ours = (statistics.median(rates[k]) for k in ("bare", "fsync", "helpdesk"))
    print()
    if args.rounds > 1:
        print("medians: " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in rates.items()))
        print("per-round helpdesk / fsync: "
              + ", ".join(f"{h / f:.2f}" for h, f in zip(rates["helpdesk"], rates["fsync"],
                                                          strict=True)))
    print(f"helpdesk / fsync baseline = {ours / fsync:.2f} (target >= 0.60)")
    print(f"helpdesk CPU per mail     = {statistics.median(cpus['helpdesk']):.2f} ms (median)")
    if args.src:
        before = statistics.median(rates["before"])
        print(f"before / fsync baseline   = {before / fsync:.2f} ({args.src})")
        print(f"before CPU per mail       = {statistics.median(cpus['before']):.2f} ms (median)")
        print(f"CPU per mail, after / before = "
              f"{statistics.median(cpus['helpdesk']) / statistics.median(cpus['before']):.2f}")
    if args.rules:
        with_rules = statistics.median(cpus["rules"])
        print(f"with {args.rules} rules: CPU per mail {with_rules:.2f} ms, "
              f"{with_rules / statistics.median(cpus['helpdesk']):.2f} x without; "
              f"{statistics.median(rates['rules']) / fsync:.2f} of fsync")
    print(f"helpdesk / bare baseline  = {ours / bare:.2f}")
    print(f"gateway peak RSS          = {peak / 1024:.1f} MB (target < 150 MB)")
    print(f"growth for a {size:.0f} MB mail  = {growth:.1f} MB (target <= 60 MB)")


if __name__ == "__main__":
    main()
