"""Structured logging set-up: dotted event names with key=value fields, to stderr."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import TextIO

import structlog

from helpdesk.config import LoggingSettings


def configure_logging(settings: LoggingSettings) -> None:
    """Route structlog and stdlib logging to stderr (stdout is the CLI's output).

    With ``[logging] file`` set, the log is appended to that file instead.
    """
    if settings.file:
        _configure(settings, logging.FileHandler(settings.file, encoding="utf-8"))
        return
    _configure(settings, None, print_to=sys.stderr)


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


def _configure(settings: LoggingSettings, handler: logging.Handler | None,
               print_to: TextIO | None = None) -> None:
    """Stdlib logging to ``handler`` (None: stderr, unless already set up); structlog
    prints to ``print_to`` when given (the cheapest path, for the daemon's stderr) or
    goes through stdlib logging."""
    level = getattr(logging, settings.level.upper(), logging.INFO)
    if handler is None:
        logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(level)
    for noisy in ("mail.log", "mailparser", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    renderer = (structlog.processors.JSONRenderer() if settings.json
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=(structlog.PrintLoggerFactory(file=print_to) if print_to is not None
                        else structlog.stdlib.LoggerFactory()),
        cache_logger_on_first_use=False,
    )
