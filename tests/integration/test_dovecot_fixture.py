"""Check that the Dovecot fixture gives tests a real, isolated, restartable IMAP mailbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import re
import socket
from typing import TYPE_CHECKING

import aioimaplib
import pytest

if TYPE_CHECKING:
    from tests.fixtures.dovecot import DovecotInstance, DovecotServer

# The fixtures come from tests/fixtures/dovecot.py, also listed in tests/conftest.py; naming it
# here too keeps this file runnable on its own (pytest loads a plugin module only once).
pytest_plugins = ["tests.fixtures.dovecot"]
pytestmark = pytest.mark.dovecot


def _message(subject: str, message_id: str) -> bytes:
    return (
        "From: Alice Customer <alice@example.com>\n"
        "To: support@support.example.com\n"
        f"Subject: {subject}\n"
        f"Message-ID: <{message_id}@example.com>\n"
        "Date: Mon, 04 Mar 2024 10:00:00 +0000\n"
        "\n"
        f"Body of {subject}.\n"
    ).encode()


def _subjects(conn: imaplib.IMAP4, folder: str = "INBOX") -> list[str]:
    typ, _ = conn.select(f'"{folder}"')
    assert typ == "OK"
    typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    subjects = []
    for item in data:
        if isinstance(item, tuple):
            parsed = email.message_from_bytes(item[1], policy=email.policy.default)
            subjects.append(str(parsed["Subject"]))
    return sorted(subjects)


def test_imaplib_login_sees_messages_delivered_to_maildir_and_appended(
    dovecot: DovecotServer,
) -> None:
    delivered = dovecot.deliver(_message("Printer on fire", "m1"))
    uid = dovecot.append(_message("Cannot log in", "m2"))

    assert delivered.parent == dovecot.maildir / "new"
    assert uid >= 1
    with dovecot.imap() as conn:
        assert _subjects(conn) == ["Cannot log in", "Printer on fire"]
    assert dovecot.count() == 2


def test_capabilities_after_login_include_idle_and_move(dovecot: DovecotServer) -> None:
    with dovecot.imap() as conn:
        typ, data = conn.capability()

    capabilities = set(data[0].decode().upper().split())
    assert typ == "OK"
    assert {"IDLE", "MOVE", "UIDPLUS"} <= capabilities


def test_uid_move_takes_message_from_inbox_to_created_folder(dovecot: DovecotServer) -> None:
    dovecot.create_folder("Processed")
    uid = dovecot.append(_message("Move me", "m3"))

    with dovecot.imap() as conn:
        conn.select("INBOX")
        typ, _ = conn.uid("MOVE", str(uid), "Processed")
        assert typ == "OK"
        assert _subjects(conn, "Processed") == ["Move me"]

    assert (dovecot.count("INBOX"), dovecot.count("Processed")) == (0, 1)


def test_deliver_to_a_new_folder_creates_it_on_disk(dovecot: DovecotServer) -> None:
    dovecot.deliver(_message("Filed", "m4"), folder="Archive")

    assert (dovecot.maildir / ".Archive" / "maildirfolder").exists()
    assert dovecot.count("Archive") == 1


async def test_aioimaplib_reads_messages_and_is_woken_by_idle(dovecot: DovecotServer) -> None:
    dovecot.deliver(_message("First", "a1"))
    client = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.port, timeout=10)
    await client.wait_hello_from_server()
    assert (await client.login(dovecot.user, dovecot.password)).result == "OK"
    await client.protocol.capability()
    assert {"IDLE", "MOVE"} <= client.protocol.capabilities
    assert (await client.select("INBOX")).result == "OK"
    search = await client.search("ALL")
    assert search.lines[0].split() == [b"1"]
    fetched = await client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: First" in b"".join(line for line in fetched.lines if line)

    idle = await client.idle_start(timeout=10)
    dovecot.deliver(_message("Second", "a2"))
    pushed: list[bytes] = []
    while not any(re.search(rb"^2 EXISTS", line) for line in pushed):
        pushed.extend(await client.wait_server_push(timeout=10))
    client.idle_done()
    await asyncio.wait_for(idle, timeout=10)
    await client.logout()


def test_restart_keeps_port_and_messages_and_drops_open_connections(
    dovecot: DovecotServer,
) -> None:
    dovecot.deliver(_message("Survives restart", "r1"))
    port = dovecot.port
    conn = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    conn.login(dovecot.user, dovecot.password)
    conn.select("INBOX")

    try:
        dovecot.restart()
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            conn.noop()
    finally:
        conn.shutdown()
    assert dovecot.port == dovecot.instance.port == port
    assert dovecot.count() == 1


def test_stopped_server_refuses_connections_until_started(
    dovecot: DovecotServer, dovecot_server: DovecotInstance
) -> None:
    dovecot_server.stop(graceful=False)
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((dovecot.host, dovecot.port), timeout=2).close()
    finally:
        dovecot_server.start()
    assert dovecot.count() == 0


def test_second_user_has_an_isolated_mailbox(
    dovecot: DovecotServer, dovecot_server: DovecotInstance
) -> None:
    other = dovecot_server.add_user()
    dovecot.deliver(_message("Only for the first user", "i1"))

    assert other.maildir != dovecot.maildir
    assert (dovecot.count(), other.count()) == (1, 0)
    conn = imaplib.IMAP4(other.host, other.port, timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            conn.login(other.user, dovecot.password)
    finally:
        conn.shutdown()


def test_each_test_gets_a_fresh_empty_mailbox(dovecot: DovecotServer) -> None:
    assert dovecot.count() == 0
    assert not any((dovecot.maildir / "new").iterdir())
