"""`helpdesk ingest`: the MTA pipe, which stores a mail or defers it (exit 75), never bounces it.

The exit status is the whole answer an MTA reads (Postfix's pipe, Exim's pipe transport,
OpenSMTPD's mda), and it is made to survive everything around it:

- 0: stored (ticket, reply, ignored, duplicate or quarantined).
- 65 (EX_DATAERR): the input is clearly not mail (empty, or binary); the MTA bounces it.
- 75 (EX_TEMPFAIL): anything else. A locked, read-only, missing or corrupt database, a
  full disk, an unreadable or invalid config, a usage error in ``master.cf``: the MTA
  keeps the mail and retries while the admin fixes the cause.

stderr gets one short line naming the cause (an MTA copies it into its log, and into the
bounce for 65); the detail goes to the log (``[logging] file``, else syslog). The MTA may
close our stdout and stderr after a few KB: SIGPIPE is ignored, and writes to a closed
stream are dropped, so the status is still the one above.

Self-contained (its own ``--config`` option and settings loading) so that ``helpdesk.cli``
registers it without an import cycle.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, NoReturn

import click

from helpdesk.configfile import PipeSettings, load_pipe_settings
from helpdesk.errors import ConfigError, NotMailError
from helpdesk.failures import describe_failure

if TYPE_CHECKING:
    from helpdesk.config import Settings

EX_OK = 0
EX_DATAERR = 65
EX_TEMPFAIL = 75
MAX_LINE = 300
# Postfix's pipe expands the null sender (a bounce) to this unless told otherwise.
NULL_SENDER = "MAILER-DAEMON"



class _PipeLog:
    """The pipe's logger, set up on first use: a delivery handed over without a word to
    log never loads structlog (the hand-over path is kept that light)."""

    def __init__(self) -> None:
        self.settings: PipeSettings | None = None
        self._log: Any = None

    @property
    def unused(self) -> bool:
        """Nothing was logged, so nothing waits in a handler to be written at exit."""
        return self._log is None

    def ready(self) -> Any:
        """Set logging up (once) and return the logger."""
        if self._log is None:
            import structlog

            from helpdesk.logs import configure_pipe_logging

            if self.settings is not None:
                configure_pipe_logging(self.settings.logging)
            self._log = structlog.get_logger("helpdesk.ingest")
        return self._log

    def __getattr__(self, level: str) -> Any:
        return getattr(self.ready(), level)


log = _PipeLog()


def say(line: str, fd: int = 2) -> None:
    """Write one line to ``fd`` unbuffered; a closed or broken stream drops it silently."""
    text = " ".join(line.split())[:MAX_LINE] + "\n"
    with contextlib.suppress(OSError, ValueError):
        os.write(fd, text.encode("utf-8", "replace"))


class _Quiet:
    """A stand-in for ``sys.stdout`` / ``sys.stderr`` that drops what it cannot write.

    Python flushes both at exit and turns a broken pipe there into exit status 120; a
    library's stray print would raise BrokenPipeError mid-ingest. Neither may change
    the status the MTA reads.
    """

    def __init__(self, stream: IO[str] | None) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            if self._stream is not None:
                self._stream.write(text)
        except (OSError, ValueError):
            self._stream = None
        return len(text)

    def flush(self) -> None:
        try:
            if self._stream is not None:
                self._stream.flush()
        except (OSError, ValueError):
            self._stream = None

    def isatty(self) -> bool:
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def leave_at_once(code: int) -> NoReturn:
    """End the process with ``code`` now, without tearing the interpreter down.

    An MTA starts one pipe per message, and Python's orderly shutdown (freeing every
    module's objects one by one) costs a pipe that only handed its mail over a good share
    of its CPU. Only for that case: the result line went out with ``os.write``, the LMTP
    session is closed, and nothing was logged, so no handler holds unwritten lines.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def guard_std_streams() -> None:
    """Ignore SIGPIPE and make stdout and stderr unable to fail (see `_Quiet`)."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if not isinstance(sys.stdout, _Quiet):
        sys.stdout = _Quiet(sys.stdout)
    if not isinstance(sys.stderr, _Quiet):
        sys.stderr = _Quiet(sys.stderr)


class PipeExit(click.ClickException):
    """Raised to end the pipe with ``exit_code`` (75: deferred) and one line on stderr."""

    exit_code = EX_TEMPFAIL

    def show(self, file: IO[Any] | None = None) -> None:
        say(f"helpdesk: {self.message}")


class NotMailExit(PipeExit):
    """Raised to end the pipe with 65: the input is clearly not mail; the MTA bounces it."""

    exit_code = EX_DATAERR


class PipeCommand(click.Command):
    """A click command whose usage errors defer the mail (75) instead of click's exit 2.

    A wrong ``argv=`` in ``master.cf`` is the admin's to fix; until then the MTA keeps
    the mail.
    """

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        guard_std_streams()
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:
            raise PipeExit(f"usage error, mail deferred: {exc.format_message()}") from None


class Envelope(NamedTuple):
    """What the MTA tells us besides the message: the envelope sender and recipients."""

    sender: str = ""
    recipients: tuple[str, ...] = ()


def split_inputs(inputs: Sequence[str], recipients: Sequence[str]) -> tuple[list[str], list[str]]:
    """(files, further recipients) from the positional arguments.

    Postfix expands ``--recipient ${recipient}`` into ``--recipient a@x b@x`` for a mail
    to several recipients, so after ``--recipient`` an argument that is not an existing
    file but looks like an address is one more recipient.

    Raises:
        PipeExit: (75) an argument that is neither a file nor, after ``--recipient``, an
            address.
    """
    files: list[str] = []
    more: list[str] = []
    for arg in inputs:
        if arg == "-" or Path(arg).is_file():
            files.append(arg)
        elif recipients and "@" in arg:
            more.append(arg)
        else:
            raise PipeExit(f"usage error, mail deferred: no such file: {arg}")
    return files, more


def envelope_for(settings: PipeSettings, sender: str | None,
                 recipients: Sequence[str]) -> Envelope:
    """The envelope as the SMTP receiver would have accepted it.

    Only our own addresses count as recipients (the SMTP receiver refuses the rest at
    RCPT); when the MTA hands us none of ours (an alias rewritten to a local name), the
    queue is chosen from the To and Cc headers, as without an envelope.
    """
    ours = tuple(r for r in recipients if settings.smtp.accepts(r))
    if recipients and not ours:
        log.warning("ingest.recipients_not_ours", recipients=list(recipients))
    mail_from = "" if sender in (None, NULL_SENDER) else sender.strip()
    return Envelope(mail_from, ours)


def preflight(settings: PipeSettings) -> str | None:
    """Why the pipe must not even open the database, or None.

    An MTA runs the pipe in its own spool directory: a relative path there names
    nothing of ours, and creating a fresh database or storage there would accept mail
    into the wrong place. A missing absolute database is created, as everywhere.
    """
    path = settings.database.sqlite_file
    if path is not None and not path.is_absolute() and not path.exists():
        return (f"database missing: {path} (relative to {Path.cwd()}; "
                "use absolute paths in the config)")
    storage = Path(settings.storage.dir)
    if not storage.is_absolute() and not storage.is_dir():
        return (f"storage directory missing: {settings.storage.dir} (relative to "
                f"{Path.cwd()}; use absolute paths in the config)")
    return None


def read_inputs(files: Sequence[str]) -> list[tuple[str, bytes]]:
    """The raw bytes of each input, refused before anything is opened when not mail.

    Raises:
        NotMailError: an input is clearly not mail (empty, or binary).
    """
    from mailgate.sniff import looks_like_mail

    raws = [(name, sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes())
            for name in files]
    for name, raw in raws:
        if not looks_like_mail(raw):
            raise NotMailError(f"{name}: input is not an email (empty, or binary)")
    return raws


def lmtp_recipients(settings: PipeSettings, raw: bytes, envelope: Envelope) -> list[str]:
    """The recipients to name in LMTP: the envelope's, else ours among To and Cc."""
    if envelope.recipients:
        return list(envelope.recipients)
    from email.parser import BytesHeaderParser
    from email.policy import compat32
    from email.utils import getaddresses

    head = BytesHeaderParser(policy=compat32).parsebytes(raw)
    found = getaddresses([str(v) for name in ("to", "cc") for v in head.get_all(name, [])])
    return list(dict.fromkeys(a for _, a in found if a and settings.smtp.accepts(a)))


def hand_over(settings: PipeSettings, raws: Sequence[tuple[str, bytes]],
              envelope: Envelope) -> list[str] | None:
    """Deliver through the running daemon's LMTP listener, when there is one.

    The daemon has the whole application loaded and commits concurrent mail together,
    so a pipe that only hands over starts and finishes in a fraction of the time of one
    that loads the pipeline itself. The daemon answers 250 per recipient only after its
    commit, so an exit 0 here means stored, as ever.

    Returns:
        One result line per input when the daemon took every mail for every recipient;
        None when LMTP is off or unreachable, or any answer was not 250: the caller then
        stores the mail itself (a mail the daemon did take is then a duplicate, kept once).
    """
    lmtp = settings.lmtp
    if not lmtp.enabled:
        return None
    from mailgate.lmtpclient import LmtpClient

    try:
        client = LmtpClient.connect(lmtp.socket, lmtp.host, lmtp.port, timeout=120)
    except OSError as exc:
        log.info("ingest.handover_unavailable", error=type(exc).__name__)
        return None
    lines = []
    try:
        for name, raw in raws:
            rcpts = lmtp_recipients(settings, raw, envelope)
            if not rcpts:
                return None
            replies = client.send(envelope.sender, rcpts, raw)
            if any(code != 250 for code, _ in replies):
                log.info("ingest.handover_refused", replies=[c for c, _ in replies])
                return None
            lines.append(f"{name}: handed over to the daemon ({replies[0][1]})")
        client.quit()
    except OSError as exc:
        log.info("ingest.handover_failed", error=type(exc).__name__)
        return None
    finally:
        client.close()
    return lines


async def store_all(settings: Settings, raws: Sequence[tuple[str, bytes]],
                    envelope: Envelope) -> list[str]:
    """Ingest each input through the one pipeline; one result line per input."""
    from helpdesk.runtime import Runtime
    from mailgate.ingest import Gateway

    rt = await Runtime.open(settings)
    try:
        gateway = Gateway(rt)
        lines = []
        for name, raw in raws:
            result = await gateway.ingest(raw, "pipe", strict=True,
                                          recipients=envelope.recipients,
                                          envelope_sender=envelope.sender)
            lines.append(f"{name}: {result.disposition}"
                         + (f" {result.ticket}" if result.ticket else "")
                         + (f" ({result.reason})" if result.reason else ""))
        return lines
    finally:
        await rt.close()


def run_pipe(config_path: str | None, sender: str | None, recipients: Sequence[str],
             inputs: Sequence[str]) -> tuple[int, str]:
    """Everything the command does, as (exit status, the one line for stderr).

    Only the sections the hand-over needs are read first; the whole configuration is
    loaded (and checked) when the pipe must store the mail itself.
    """
    try:
        pipe = load_pipe_settings(config_path)
    except ConfigError as exc:
        return EX_TEMPFAIL, f"configuration error, mail deferred: {exc}"
    log.settings = pipe
    try:
        files, more = split_inputs(inputs, recipients)
    except PipeExit as exc:
        return exc.exit_code, exc.message
    envelope = envelope_for(pipe, sender, [*recipients, *more])
    problem = preflight(pipe)
    if problem is not None:
        log.error("ingest.deferred", cause=problem)
        return EX_TEMPFAIL, f"{problem}; mail deferred"
    try:
        raws = read_inputs(files or ["-"])
        lines = hand_over(pipe, raws, envelope)
        if lines is None:
            lines = store_itself(config_path, raws, envelope)
    except NotMailError as exc:
        return EX_DATAERR, str(exc)
    except ConfigError as exc:
        return EX_TEMPFAIL, f"configuration error, mail deferred: {exc}"
    except Exception as exc:
        cause = describe_failure(exc)
        log.error("ingest.deferred", cause=cause, error=type(exc).__name__, exc_info=exc)
        return EX_TEMPFAIL, f"temporary failure, mail deferred: {cause}"
    for line in lines:
        say(line, fd=1)
    return EX_OK, ""


def store_itself(config_path: str | None, raws: Sequence[tuple[str, bytes]],
                 envelope: Envelope) -> list[str]:
    """Load the whole configuration and store each mail through the pipeline here."""
    import asyncio

    from helpdesk.config import load_settings

    settings = load_settings(config_path)
    log.ready()  # the pipeline logs through it
    return asyncio.run(store_all(settings, raws, envelope))


@click.command(cls=PipeCommand)
@click.option("--config", "config_path", metavar="PATH",
              help="Config file (default: $HELPDESK_CONFIG, ./helpdesk.toml).")
@click.option("--sender", default=None, metavar="ADDR",
              help="Envelope sender (Postfix: ${sender}).")
@click.option("--recipient", "recipients", multiple=True, metavar="ADDR",
              help="Envelope recipient, repeatable (Postfix: ${recipient}).")
@click.argument("inputs", nargs=-1, metavar="[FILE]...")
@click.pass_context
def ingest(ctx: click.Context, config_path: str | None, sender: str | None,
           recipients: tuple[str, ...], inputs: tuple[str, ...]) -> None:
    """Ingest raw messages from FILES (stdin when none), MTA-pipe style.

    Exit 0 when stored (ticket, reply, ignored, duplicate or quarantined), 65 for input
    that is clearly not mail, 75 for anything else (the MTA keeps the mail and retries).
    """
    guard_std_streams()
    root = ctx.find_root().ensure_object(dict)
    code, line = run_pipe(config_path or root.get("config_path"), sender, recipients, inputs)
    if code == EX_OK and log.unused and root.get("process_of_its_own"):
        leave_at_once(EX_OK)
    if code == EX_DATAERR:
        raise NotMailExit(line)
    if code != EX_OK:
        raise PipeExit(line)
