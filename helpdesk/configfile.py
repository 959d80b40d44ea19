"""The config file and its environment overrides, and the sections the MTA pipe reads.

Everything `helpdesk.config` builds goes through :func:`read_config` and :func:`build`;
they live here, with the few sections the pipe's hand-over needs (database, storage,
SMTP, LMTP, logging), so that ``helpdesk ingest`` can hand a mail to the running daemon
without defining every other section first: an MTA starts one per message, and the rest
of the settings cost more to import than the whole delivery. `helpdesk.config`
re-exports these names; import them from there.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from helpdesk.errors import ConfigError


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///helpdesk.db"
    busy_timeout_ms: int = 30000
    # How long the gateway's group commit waits for concurrent mail to share a batch
    # (see helpdesk/groupcommit.py); 0 commits whatever is pending at once.
    group_commit_wait_ms: float = 4.0
    pool_size: int = 5
    echo: bool = False

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file the URL names (a relative path stays relative), None
        for another database or an in-memory one.

        Read the way SQLAlchemy reads it (a test holds the two to the same answer), but
        without loading SQLAlchemy: the MTA pipe's hand-over path never needs it.
        """
        scheme, sep, rest = self.url.partition("://")
        if not sep or scheme.split("+", 1)[0].lower() != "sqlite":
            return None
        name = unquote((rest[1:] if rest.startswith("/") else rest).partition("?")[0])
        if name.startswith("file:"):
            name = name[5:]
        return Path(name) if name and name != ":memory:" else None


@dataclass(frozen=True)
class StorageSettings:
    dir: str = "data"
    max_attachment_bytes: int = 26214400
    max_attachments_per_message_bytes: int = 52428800
    raw_in_database_bytes: int = 131072


@dataclass(frozen=True)
class SmtpSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2525
    max_message_bytes: int = 26214400
    domains: tuple[str, ...] = ("support.example.com",)
    addresses: tuple[str, ...] = ()
    # Local parts accepted in ``domains`` (plus-tags ignored); empty accepts every one.
    local_parts: tuple[str, ...] = ()
    tls_cert: str = ""
    tls_key: str = ""
    require_tls: bool = False
    # Open connections beyond which a new one is greeted with 421 4.7.0 and closed: in all,
    # and from one client address (IPv6: one /64). 0 means no limit.
    max_connections: int = 200
    max_connections_per_client: int = 50
    # DATA that receives nothing for this long is cut (421 4.4.2); RFC 5321 4.5.3.2.5.
    data_timeout_seconds: float = 180.0
    # DATA beyond this many bytes is spooled to an unlinked file under [storage] dir
    # instead of memory, so stalled transfers cannot exhaust it.
    data_in_memory_bytes: int = 262144
    # Spooled messages are read back for ingest while those being ingested total no more
    # than this; the rest wait their turn (one larger goes alone). 0 means no limit.
    max_ingest_bytes: int = 104857600

    def accepts(self, address: str) -> bool:
        """Whether ``address`` is one of ours: the rule every receiver and check applies.

        Ours are the configured ``addresses`` and, in ``domains``, every local part or only
        the listed ``local_parts``; a plus-tag (``support+tag@``) is ignored.
        """
        local, _, domain = address.strip().lower().rpartition("@")
        if not local or not domain:
            return False
        base_local = local.split("+", 1)[0]
        if f"{base_local}@{domain}" in {a.lower() for a in self.addresses}:
            return True
        if domain not in {d.lower() for d in self.domains}:
            return False
        return not self.local_parts or base_local in {p.lower() for p in self.local_parts}


@dataclass(frozen=True)
class LmtpSettings:
    """The LMTP listener, the recommended hand-over from an MTA (one reply per recipient)."""

    enabled: bool = False
    # A Unix socket path; when set, host and port are not used.
    socket: str = ""
    socket_mode: int = 0o660
    host: str = "127.0.0.1"
    port: int = 2424


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    json: bool = False
    # A file to append the log to; empty: stderr (the MTA pipe: syslog, else nowhere).
    file: str = ""


ENV_PREFIX = "HELPDESK_"
_TOML_ALIASES = {"from": "sender", "class": "status_class"}


def find_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read, by the documented order; None means embedded defaults only."""
    if explicit:
        return Path(explicit)
    if environ.get("HELPDESK_CONFIG"):
        return Path(environ["HELPDESK_CONFIG"])
    local = Path("helpdesk.toml")
    return local if local.exists() else None


@dataclass(frozen=True)
class ConfigSource:
    """The merged file and environment, before any section is built from it."""

    data: dict[str, Any]
    # The file read, or "<embedded defaults>"; errors name it.
    source: str
    # ``section.key`` -> ``environment NAME=value`` for each environment override.
    origins: dict[str, str]


def read_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
                *, search: bool = True) -> ConfigSource:
    """Read the config file (by the documented lookup order) and merge the overrides.

    Args:
        path: an explicit config file (``--config``); when None and ``search`` is true the
            documented lookup order applies.
        environ: the environment to read overrides from (``os.environ`` when None).
        search: look up ``$HELPDESK_CONFIG`` and ``./helpdesk.toml`` when no path is given.

    Raises:
        ConfigError: unreadable file or bad TOML.
    """
    env = os.environ if environ is None else environ
    cfg_path = find_config_path(str(path) if path else None, env) if search or path else None
    data: dict[str, Any] = {}
    source = "<embedded defaults>"
    if cfg_path is not None:
        source = str(cfg_path)
        try:
            data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read config file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    origins = _apply_env(data, env)
    return ConfigSource(data, source, origins)


def build(cls: type[Any], config: ConfigSource, section: str = "") -> Any:
    """``cls`` built from ``config``: the whole of it, or the table ``section``.

    Raises:
        ConfigError: an unknown key or a value of the wrong type, named with where it
            came from (the file or the environment variable).
    """
    data = config.data.get(section, {}) if section else config.data
    return _build(cls, data, section, config.source, config.origins)


class PipeSettings(typing.NamedTuple):
    """What the MTA pipe reads to hand a mail over: the sections of those names only."""

    database: DatabaseSettings
    storage: StorageSettings
    smtp: SmtpSettings
    lmtp: LmtpSettings
    logging: LoggingSettings


def load_pipe_settings(path: str | Path | None = None,
                       environ: Mapping[str, str] | None = None) -> PipeSettings:
    """The pipe's sections, checked as `helpdesk.config.load_settings` checks them.

    The other sections are not read: a mistake there is reported by the full load, which
    the pipe makes before it stores a mail itself (and the daemon made at its start).

    Raises:
        ConfigError: as :func:`read_config` and :func:`build`.
    """
    config = read_config(path, environ)
    return PipeSettings(**{name: build(cls, config, name)
                           for name, cls in typing.get_type_hints(PipeSettings).items()})


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Merge ``HELPDESK_<SECTION>__<KEY>`` overrides into ``data``.

    Returns:
        ``section.key`` -> ``environment NAME=value`` for each override, so an error in
        one names the variable to fix rather than the file it did not come from.
    """
    origins: dict[str, str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "HELPDESK_CONFIG":
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"environment {name}: section [{section}] is not a table")
        table[key] = value
        origins[f"{section}.{key}"] = f"environment {name}={raw}"
    return origins


def _build(cls: type[Any], data: Any, where: str, source: str,
           origins: Mapping[str, str] | None = None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{where or 'root'}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = _TOML_ALIASES.get(raw_key, raw_key)
        dotted = f"{where}.{raw_key}" if where else raw_key
        origin = (origins or {}).get(dotted) or next(
            (o for k, o in (origins or {}).items() if k.startswith(dotted + ".")), source)
        if key not in fields:
            raise ConfigError(f"{origin}: unknown setting '{dotted}'")
        kwargs[key] = _coerce(hints[key], value, dotted, origin, origins)
    missing = [
        name for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: missing setting '{where}.{missing[0]}'")
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a check across fields: say where it came from
        if str(exc).startswith(source):
            raise
        raise ConfigError(f"{source}: {where + ': ' if where else ''}{exc}") from None


def _coerce(hint: Any, value: Any, dotted: str, source: str,
            origins: Mapping[str, str] | None = None) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, dotted, source, origins)
    if origin is tuple:
        item = args[0]
        if isinstance(value, str) and item is str:
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{dotted}' must be a list")
        return tuple(_coerce(item, v, f"{dotted}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{dotted}' must be a table")
        return {str(k): _coerce(args[1], v, f"{dotted}.{k}", source) for k, v in value.items()}
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: '{dotted}' must be one of {choices}, not {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _coerce(arg, value, dotted, source)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: '{dotted}' has the wrong type ({type(value).__name__})")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: '{dotted}' must be true or false, not {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: '{dotted}' must be an integer, not {value!r}")
    if hint is int and dotted.rpartition(".")[2] == "port" and not 0 <= value <= 65535:
        raise ConfigError(f"{source}: '{dotted}' must be a port number from 0 to 65535 "
                          f"(0: any free port), not {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{source}: '{dotted}' must be {hint.__name__}, not {value!r}")
    return value
