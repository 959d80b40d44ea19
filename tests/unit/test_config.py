"""Config loading: file lookup order, environment overrides, and one-line errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.config import Settings, load_settings
from helpdesk.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_example_config_documents_exactly_the_embedded_defaults() -> None:
    example = load_settings(REPO / "config.example.toml", environ={})
    assert dataclasses.replace(example, source="") == dataclasses.replace(Settings(), source="")


def test_defaults_apply_when_no_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert settings.source == "<embedded defaults>"
    assert settings.database.url.startswith("sqlite+aiosqlite")
    assert settings.broker.url == "memory://"


def test_lookup_order_is_explicit_then_env_then_local_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helpdesk.toml").write_text('[smtp]\nport = 1001\n')
    (tmp_path / "env.toml").write_text('[smtp]\nport = 1002\n')
    (tmp_path / "explicit.toml").write_text('[smtp]\nport = 1003\n')
    assert load_settings(None, environ={}).smtp.port == 1001
    env = {"HELPDESK_CONFIG": str(tmp_path / "env.toml")}
    assert load_settings(None, environ=env).smtp.port == 1002
    assert load_settings(tmp_path / "explicit.toml", environ=env).smtp.port == 1003


def test_environment_overrides_single_keys_with_toml_values(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[smtp]\nport = 1001\n')
    env = {"HELPDESK_SMTP__PORT": "2600", "HELPDESK_SMTP__DOMAINS": '["a.example", "b.example"]',
           "HELPDESK_DATABASE__URL": "postgresql+asyncpg://x@y/z"}
    settings = load_settings(cfg, environ=env)
    assert settings.smtp.port == 2600
    assert settings.smtp.domains == ("a.example", "b.example")
    assert settings.database.url == "postgresql+asyncpg://x@y/z"


@pytest.mark.parametrize(("toml", "fragment"), [
    ('[smtp]\nprot = 25\n', "unknown setting 'smtp.prot'"),
    ('[smtp]\nport = "25"\n', "'smtp.port' must be an integer"),
    ('[smpt]\nport = 25\n', "unknown setting 'smpt'"),
    ('[tickets]\nreply_to_closed = "maybe"\n', "'tickets.reply_to_closed' must be one of"),
    ('[[imap]]\nport = 993\n', "missing setting 'imap[0].host'"),
    ('[smtp\n', "invalid TOML"),
])
def test_bad_config_names_the_key_and_the_file(tmp_path: Path, toml: str, fragment: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert fragment in str(info.value)
    assert str(cfg) in str(info.value)


def test_cli_stops_with_one_line_and_exit_2_on_a_mistyped_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[database]\nulr = "sqlite+aiosqlite:///x.db"\n')
    proc = subprocess.run([sys.executable, "-m", "helpdesk", "--config", str(cfg), "init"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "database.ulr" in lines[0] and str(cfg) in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("name", "raw", "says"), [
    ("HELPDESK_SMTP__PORT", "abc", "'smtp.port' must be an integer"),
    ("HELPDESK_SMTP__PROT", "25", "unknown setting 'smtp.prot'"),
    ("HELPDESK_PORTAL__ENABLED", "maybe", "'portal.enabled' must be true or false"),
    ("HELPDESK_SMPT__PORT", "2526", "unknown setting 'smpt'"),
    ("HELPDESK_SMTP__PORT", "99999", "'smtp.port' must be a port number"),
    ("HELPDESK_PORTAL__PORT", "-1", "'portal.port' must be a port number"),
])
def test_a_bad_environment_override_names_the_variable(tmp_path: Path, name: str, raw: str,
                                                       says: str) -> None:
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text("[smtp]\nport = 2525\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg, environ={name: raw})
    assert str(caught.value).startswith(f"environment {name}={raw}: ")
    assert says in str(caught.value) and str(cfg) not in str(caught.value)


@given(st.lists(st.text(alphabet="abcXYZ09 _-.%é", min_size=1, max_size=8), min_size=1,
                max_size=4),
       st.sampled_from(["sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"]),
       st.booleans(), st.sampled_from(["", "?mode=ro", "?timeout=5&uri=true"]))
def test_sqlite_file_reads_a_url_as_sqlalchemy_does(parts: list[str], scheme: str,
                                                    absolute: bool, query: str) -> None:
    from sqlalchemy.engine import make_url

    from helpdesk.config import DatabaseSettings

    path = ("/" if absolute else "") + "/".join(parts)
    url = f"{scheme}:///{path}{query}"
    expected = make_url(url).database
    found = DatabaseSettings(url=url).sqlite_file
    assert (str(found) if found is not None else None) == (
        str(Path(expected)) if expected not in (None, "", ":memory:") else None)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:",
                                 "postgresql+asyncpg://u:p@h/db", "mysql://h/db"])
def test_sqlite_file_is_none_for_memory_and_servers(url: str) -> None:
    from helpdesk.config import DatabaseSettings

    assert DatabaseSettings(url=url).sqlite_file is None
