"""MAIL FROM / RCPT TO paths: the gateway's shortcut answers exactly as aiosmtpd does."""

from __future__ import annotations

import itertools

import pytest
from aiosmtpd.smtp import SMTP

from mailgate.smtp import GatewaySMTP

LOCALS = ["a", "carol.customer", "A_B+tag", "x!#$%&'*+/=?^_`{|}~-y", "a..b", ".a", "a.",
          '"x y"', "ü", "", "a b"]
DOMAINS = ["b.c", "example.org", "x-y.example.org", "b", "-b.c", "b..c", "b.c.", "[1.2.3.4]",
           "bü.de", ""]
TAILS = ["", " SIZE=100", "  BODY=8BITMIME SMTPUTF8", "\tSIZE=1", "x", " ", " (comment)",
         "(c) SIZE=1", " SIZE=1 (c)"]
CASES = ["", "<>", "<> SIZE=1", "<@relay:a@b.c>", "<a@b.c", "a@b.c>", "<<a@b.c>>",
         *(f"{lead}<{local}@{domain}>{tail}" for local, domain, tail, lead in
           itertools.product(LOCALS, DOMAINS, TAILS, ["", " "])),
         *(f"{local}@{domain}" for local, domain in itertools.product(LOCALS, DOMAINS))]


def _server(cls: type[SMTP], limit: int) -> SMTP:
    server = cls.__new__(cls)
    server.local_part_limit = limit
    return server


def _answer(server: SMTP, arg: str) -> object:
    try:
        return server._getaddr(arg)
    except Exception as exc:  # aiosmtpd's parser raises on some (say 'a@'): so must we
        return type(exc)


@pytest.mark.parametrize("limit", [0, 8])
def test_the_shortcut_gives_aiosmtpds_answer_for_every_path(limit: int) -> None:
    ours, theirs = _server(GatewaySMTP, limit), _server(SMTP, limit)
    differ = [(arg, _answer(ours, arg), _answer(theirs, arg)) for arg in CASES
              if _answer(ours, arg) != _answer(theirs, arg)]
    assert differ == []
    assert len(CASES) > 1000
