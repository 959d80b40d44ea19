"""`helpdesk run` as a process: a role that cannot start stops the daemon, loudly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _bound() -> socket.socket:
    """A listening socket on a free port, standing in for another program holding it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, smtp_port: int, portal_port: int, portal_extra: str = "") -> Path:
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "hd.db"}"\n'
                   f'[storage]\ndir = "{tmp_path / "data"}"\n'
                   f'[smtp]\nport = {smtp_port}\n'
                   f'[logging]\njson = true\n'
                   f'[portal]\nport = {portal_port}\n{portal_extra}')
    return cfg


def _run(cfg: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", str(cfg), "run"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_run_exits_non_zero_with_one_line_when_the_smtp_port_is_taken(tmp_path: Path) -> None:
    taken = _bound()
    portal_port = _free_port()
    proc = _run(_config(tmp_path, taken.getsockname()[1], portal_port), tmp_path)
    try:
        started = time.monotonic()
        rc = proc.wait(timeout=30)
        elapsed = time.monotonic() - started
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
        taken.close()
    assert rc != 0, err
    assert elapsed < 15, elapsed
    last = err.strip().splitlines()[-1]
    assert last.startswith("helpdesk: the mailgate role failed:"), err
    assert "address already in use" in last
    assert "Traceback" not in err
    assert not _listening(portal_port), "the portal kept running after mailgate failed"


def test_portal_enabled_false_is_honoured_by_run(tmp_path: Path) -> None:
    smtp_port, portal_port = _free_port(), _free_port()
    proc = _run(_config(tmp_path, smtp_port, portal_port, "enabled = false\n"), tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not _listening(smtp_port):
            assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "SMTP never listened"
            time.sleep(0.2)
        time.sleep(1.0)  # the portal starts alongside SMTP; give it the chance to appear
        assert not _listening(portal_port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {"event": "daemon.role_disabled", "role": "portal"}.items() <= next(
        e for e in events if e.get("event") == "daemon.role_disabled").items()
    started = next(e for e in events if e.get("event") == "daemon.started")
    assert started["database"] == str(tmp_path / "hd.db")  # where the data is, said at start
    assert started["storage"] == str(tmp_path / "data")


def test_portal_enabled_true_still_serves(tmp_path: Path) -> None:
    smtp_port, portal_port = _free_port(), _free_port()
    proc = _run(_config(tmp_path, smtp_port, portal_port, "enabled = true\n"), tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not _listening(portal_port):
            assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the portal never listened"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
