"""Checks the systemd units: systemd-analyze accepts them and each keeps its hardening.

``systemd-analyze verify`` works without systemd as PID 1 when given unit file paths, but
it reports unknown keys and bad values only as warnings on stderr while still exiting 0,
and it fails a unit whose ExecStart binary is missing. So the units are copied into a
temporary directory with ExecStart pointed at a stub script, and the test fails on any
output line that names one of our units.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpdesk.config import load_settings

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_BINARY = "/usr/local/bin/helpdesk"

# unit file -> the `helpdesk` subcommand it runs
ROLES = {
    "helpdesk.service": "run",
    "helpdesk-mailgate.service": "mailgate",
    "helpdesk-worker.service": "worker",
    "helpdesk-worker@.service": "worker",
    "helpdesk-sla.service": "sla",
    "helpdesk-portal.service": "portal",
}
ROLE_UNITS = sorted(name for name in ROLES if name != "helpdesk.service")
ALL_UNITS = [*sorted(ROLES), "helpdesk.target"]

# [Service] settings every unit must carry, exactly.
REQUIRED_SERVICE = {
    "User": "helpdesk",
    "Group": "helpdesk",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
    "TimeoutStopSec": "30",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/helpdesk",
    "StateDirectory": "helpdesk",
    "WorkingDirectory": "/var/lib/helpdesk",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}

# `systemd-analyze security` exposure, times ten; ours score 1.4 ("OK"), a unit without
# the hardening block scores above 9 ("UNSAFE").
MAX_EXPOSURE = 20


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true but is not on PATH")
        pytest.skip(f"{name} not installed (Debian package systemd)")
    return path


@pytest.fixture(scope="module")
def analyze() -> str:
    return _require_tool("systemd-analyze")


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) pairs; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def last_value(pairs: list[tuple[str, str]], key: str) -> str | None:
    values = [v for k, v in pairs if k == key]
    return values[-1] if values else None


def words(pairs: list[tuple[str, str]], key: str) -> set[str]:
    return {word for k, v in pairs if k == key for word in v.split()}


def stage_units(dest: Path, names: list[str] = ALL_UNITS) -> Path:
    """Copy units into ``dest`` with ExecStart pointing at an executable stub."""
    stub = dest / "bin" / "helpdesk"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    for name in names:
        text = (SYSTEMD_DIR / name).read_text(encoding="utf-8")
        (dest / name).write_text(text.replace(f"ExecStart={INSTALLED_BINARY}", f"ExecStart={stub}"))
    return dest


def problems_about_our_units(output: str, staged: Path) -> list[str]:
    """Lines of systemd-analyze output that name one of our unit files or instances."""
    ours = re.compile(r"helpdesk[\w@.-]*\.(?:service|target)")
    return [line for line in output.splitlines() if str(staged) in line or ours.search(line)]


def run_verify(analyze: str, staged: Path, unit: str) -> list[str]:
    """Run ``systemd-analyze verify`` on one staged unit; return its complaints."""
    proc = subprocess.run(
        [analyze, "verify", "--man=no", str(staged / unit)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )
    found = problems_about_our_units(proc.stdout + proc.stderr, staged)
    if proc.returncode != 0 and not found:
        found = [f"exit {proc.returncode}: {proc.stderr.strip()}"]
    return found


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    return stage_units(tmp_path)


def test_every_process_role_has_a_unit() -> None:
    missing = [name for name in ALL_UNITS if not (SYSTEMD_DIR / name).is_file()]
    assert missing == []


@pytest.mark.parametrize("unit", [*ALL_UNITS, "helpdesk-worker@2.service"])
def test_systemd_analyze_verify_accepts_unit(analyze: str, staged: Path, unit: str) -> None:
    assert run_verify(analyze, staged, unit) == []


@pytest.mark.parametrize(
    ("original", "broken", "expected"),
    [
        ("ProtectSystem=strict", "ProtectSytem=strict", "Unknown key"),
        ("Restart=on-failure", "Restart=sometimes", "restart specifier"),
        (f"ExecStart={INSTALLED_BINARY}", "ExecStart=/nonexistent/helpdesk", "not executable"),
    ],
)
def test_verify_check_reports_a_broken_unit(
    analyze: str, tmp_path: Path, original: str, broken: str, expected: str
) -> None:
    staged = stage_units(tmp_path, ["helpdesk-sla.service"])
    unit = staged / "helpdesk-sla.service"
    text = (SYSTEMD_DIR / "helpdesk-sla.service").read_text(encoding="utf-8")
    assert original in text
    unit.write_text(text.replace(original, broken))
    problems = run_verify(analyze, staged, unit.name)
    assert any(expected in line for line in problems), problems


@pytest.mark.parametrize("unit", sorted(ROLES))
def test_security_exposure_stays_low(analyze: str, staged: Path, unit: str) -> None:
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}",
         "--no-pager", str(staged / unit)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    overall = [line for line in proc.stdout.splitlines() if "Overall exposure" in line]
    assert proc.returncode == 0, overall or proc.stderr


@pytest.mark.parametrize("unit", sorted(ROLES))
def test_unit_runs_its_role_as_helpdesk_with_hardening(unit: str) -> None:
    service = parse_unit(SYSTEMD_DIR / unit)["Service"]
    actual = {key: last_value(service, key) for key in REQUIRED_SERVICE}
    assert actual == REQUIRED_SERVICE
    assert last_value(service, "ExecStart") == f"{INSTALLED_BINARY} {ROLES[unit]}"
    assert last_value(service, "RestartSec")
    # Optional ("-" prefix) shared file first; the worker template adds a per-instance one.
    env_files = [v for k, v in service if k == "EnvironmentFile"]
    assert env_files[0] == "-/etc/helpdesk/helpdesk.env"


@pytest.mark.parametrize("unit", sorted(ROLES))
def test_unit_starts_after_network_and_data_stores(unit: str) -> None:
    sections = parse_unit(SYSTEMD_DIR / unit)
    after = words(sections["Unit"], "After")
    assert {"network-online.target", "postgresql.service", "redis-server.service"} <= after
    assert "network-online.target" in words(sections["Unit"], "Wants")
    assert "multi-user.target" in words(sections["Install"], "WantedBy")


@pytest.mark.parametrize("unit", ROLE_UNITS)
def test_role_unit_belongs_to_helpdesk_target(unit: str) -> None:
    sections = parse_unit(SYSTEMD_DIR / unit)
    assert "helpdesk.target" in words(sections["Unit"], "PartOf")
    assert "helpdesk.target" in words(sections["Install"], "WantedBy")


def test_all_in_one_unit_conflicts_with_the_role_units() -> None:
    conflicts = words(parse_unit(SYSTEMD_DIR / "helpdesk.service")["Unit"], "Conflicts")
    assert {"helpdesk.target", "helpdesk-mailgate.service", "helpdesk-portal.service"} <= conflicts


def test_sysusers_file_creates_the_helpdesk_user(tmp_path: Path) -> None:
    tool = _require_tool("systemd-sysusers")
    conf = SYSTEMD_DIR / "helpdesk.sysusers.conf"
    proc = subprocess.run(
        [tool, "--dry-run", f"--root={tmp_path}", str(conf)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(conf) not in proc.stderr, proc.stderr
    assert "Creating user 'helpdesk'" in proc.stdout + proc.stderr


def test_env_example_points_at_the_config_and_its_overrides_load() -> None:
    lines = (SYSTEMD_DIR / "helpdesk.env.example").read_text(encoding="utf-8").splitlines()
    active = [line for line in lines if line and not line.startswith("#")]
    assert active == ["HELPDESK_CONFIG=/etc/helpdesk/helpdesk.toml"]
    # The commented examples must be overrides the config loader really accepts.
    examples: dict[str, str] = {}
    for line in lines:
        if line.startswith("#HELPDESK_"):
            key, _, value = line[1:].partition("=")
            examples[key] = value
    assert examples, "expected commented HELPDESK_<SECTION>__<KEY> examples"
    settings = load_settings(None, examples, search=False)
    assert settings.portal.secret_key == ("old-key", "new-key")
