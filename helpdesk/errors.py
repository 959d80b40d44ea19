"""The exception hierarchy, each class carrying how every edge (SMTP, HTTP, CLI) renders it."""

from __future__ import annotations


class HelpdeskError(Exception):
    """Raised for any failure the help desk itself recognises; the root of all our errors."""

    smtp_reply = "451 4.3.0 Temporary local problem, please retry"
    http_status = 500
    exit_code = 75


class DomainError(HelpdeskError):
    """Raised when a request breaks a business rule; the message is safe to show a user."""

    smtp_reply = "550 5.7.1 Request refused"
    http_status = 400
    exit_code = 65


class UnknownValueError(DomainError):
    """Raised when a status, priority, category or channel name is not configured."""


class NotFoundError(DomainError):
    """Raised when a ticket, agent or other record named by the caller does not exist."""

    http_status = 404
    exit_code = 1


class TransientError(HelpdeskError):
    """Raised when the operation may succeed if retried (locked database, lost connection)."""


class ConfigError(HelpdeskError):
    """Raised when the configuration file or an environment override is invalid.

    The message names the key and the file, in one line, because it is shown to the
    operator at start-up instead of a traceback.
    """

    exit_code = 2


class NotMailError(DomainError):
    """Raised when input given to ingest is clearly not an email (empty, or binary)."""

    exit_code = 65


class RoleFailedError(HelpdeskError):
    """Raised when a daemon role stops by itself (its port is taken, its server died).

    The other roles are stopped first; the process then exits non-zero so that systemd
    or the admin's terminal sees the failure instead of a daemon that quietly lacks a part.
    """

    exit_code = 1
