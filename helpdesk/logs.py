"""Structured logging set-up: dotted event names with key=value fields, to stderr."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Any, Literal, TextIO

import structlog

from helpdesk.config import LoggingSettings

LogFormat = Literal["json", "console"]


def log_format(settings: LoggingSettings, fmt: str | None, stream: TextIO | None) -> LogFormat:
    """The format to write: ``--log-format`` when given, JSON when ``[logging] json``, else
    console lines on a terminal and JSON for everything else (journald, a log shipper)."""
    if fmt in ("json", "console"):
        return fmt  # type: ignore[return-value]
    if settings.json:
        return "json"
    return "console" if stream is not None and _isatty(stream) else "json"


def configure_logging(settings: LoggingSettings, fmt: str | None = None) -> None:
    """Route structlog and stdlib logging to stderr (stdout is the CLI's output).

    With ``[logging] file`` set, the log is appended to that file instead. Records of
    other libraries (uvicorn, Dramatiq, aiosmtpd) are rendered by the same processors as
    our own events, so the log has one format.
    """
    if settings.file:
        handler = logging.FileHandler(settings.file, encoding="utf-8")
        _configure(settings, handler, as_json=log_format(settings, fmt, None) == "json")
        return
    _configure(settings, logging.StreamHandler(sys.stderr), print_to=sys.stderr,
               as_json=log_format(settings, fmt, sys.stderr) == "json")


def configure_pipe_logging(settings: LoggingSettings, stderr: TextIO | None = None) -> str:
    """Logging for the MTA pipe, whose stderr the MTA reads (and may close) after a few KB.

    The detail goes to ``[logging] file`` when set, else to syslog (``/dev/log``, where an
    MTA's own log usually is), else nowhere: stderr gets only the pipe's one line. An
    operator running the command on a terminal sees the log on it as usual. A log that
    cannot be written is never a reason to lose a mail (``logging.raiseExceptions`` off).

    Returns:
        where the log goes ("file", "syslog", "stderr" or "none").
    """
    logging.raiseExceptions = False
    stream = stderr or sys.stderr
    if settings.file:
        try:
            _configure(settings, logging.FileHandler(settings.file, encoding="utf-8"))
            return "file"
        except OSError:
            pass
    if stream is not None and _isatty(stream):
        _configure(settings, logging.StreamHandler(stream))
        return "stderr"
    if os.path.exists("/dev/log"):
        try:
            syslog = logging.handlers.SysLogHandler(
                address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_MAIL)
            syslog.ident = "helpdesk-ingest: "
            _configure(settings, syslog)
            return "syslog"
        except OSError:
            pass
    _configure(settings, logging.NullHandler())
    return "none"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def _configure(settings: LoggingSettings, handler: logging.Handler,
               print_to: TextIO | None = None, *, as_json: bool | None = None) -> None:
    """Stdlib logging to ``handler``, rendered like our own events; structlog prints to
    ``print_to`` when given (the cheapest path, for the daemon's stderr) or goes through
    stdlib logging."""
    level = getattr(logging, settings.level.upper(), logging.INFO)
    renderer: Any = (structlog.processors.JSONRenderer()
                     if (settings.json if as_json is None else as_json)
                     else structlog.dev.ConsoleRenderer(colors=False))
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared]))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("mail.log", "mailparser", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    through_stdlib = print_to is None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            *([structlog.stdlib.ProcessorFormatter.wrap_for_formatter] if through_stdlib
              else [structlog.processors.format_exc_info, renderer]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=(structlog.PrintLoggerFactory(file=print_to) if print_to is not None
                        else structlog.stdlib.LoggerFactory()),
        cache_logger_on_first_use=False,
    )
