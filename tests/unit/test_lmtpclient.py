"""The pipe's LMTP client against peers that misbehave: it raises, it never hangs or guesses.

A real Unix socket; the peer is a thread that writes a script of bytes. (The client
against the real listener is in tests/e2e/test_lmtp.py.)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.lmtpclient import LmtpClient, LmtpError


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A listener that answers its one connection with the script in the returned list
    (a chunk, then a wait for the client's next line; an empty chunk hangs up)."""
    path = str(tmp_path / "peer.sock")
    script: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            for chunk in script:
                if not chunk:
                    return  # hang up
                conn.sendall(chunk)
                conn.recv(4096)  # the client's next command

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, script
    server.close()
    thread.join(timeout=5)


def test_a_multi_line_greeting_and_lhlo_reply_are_read_whole(
        peer: tuple[str, list[bytes]]) -> None:
    path, script = peer
    script += [b"220-hello\r\n220 there\r\n", b"250-ours\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
               b"451 4.3.0 try later\r\n"]
    client = LmtpClient.connect(path, "", 0, timeout=5)
    try:
        assert client.command("MAIL FROM:<a@example.org>") == (451, "4.3.0 try later")
    finally:
        client.close()


@pytest.mark.parametrize("greeting", [b"554 go away\r\n", b"hello there\r\n", b"",
                                      b"220 " + b"x" * 9000 + b"\r\n"])
def test_a_bad_greeting_is_an_error(peer: tuple[str, list[bytes]], greeting: bytes) -> None:
    path, script = peer
    script.append(greeting)
    with pytest.raises(LmtpError):
        LmtpClient.connect(path, "", 0, timeout=5)


def test_a_connection_closed_mid_session_is_an_error(peer: tuple[str, list[bytes]]) -> None:
    path, script = peer
    script += [b"220 hi\r\n", b"250 ok\r\n"]  # then the peer hangs up
    client = LmtpClient.connect(path, "", 0, timeout=5)
    try:
        with pytest.raises(OSError):
            client.send("a@example.org", ["support@support.example.com"], b"x\r\n")
        client.quit()  # no error: the peer is gone
    finally:
        client.close()


def test_no_listener_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        LmtpClient.connect(str(tmp_path / "none.sock"), "", 0, timeout=5)


def test_an_address_with_a_line_break_is_refused_before_it_is_sent(
        peer: tuple[str, list[bytes]]) -> None:
    path, script = peer
    script += [b"220 hi\r\n", b"250 ok\r\n"]
    client = LmtpClient.connect(path, "", 0, timeout=5)
    try:
        with pytest.raises(LmtpError, match="line break"):
            client.send("a@example.org>\r\nRCPT TO:<victim@example.net", ["x@example.org"],
                        b"x\r\n")
    finally:
        client.close()
