"""Signed Message-IDs and plus-addresses: tokens we sent before still verify."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from helpdesk.mailtokens import (
    make_message_id,
    make_reply_address,
    parse_reply_address,
    ticket_from_message_id,
)


def _full_digest_mac(secret: str, text: str, length: int) -> str:
    """The MAC as first written: base32 of the whole digest, cut to ``length``."""
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower().rstrip("=")[:length]


@given(number=st.integers(1, 10**9), nonce=st.from_regex(r"[a-z0-9]{6,16}", fullmatch=True),
       secret=st.text(min_size=1, max_size=40))
def test_message_ids_verify_and_match_the_full_digest_mac(number: int, nonce: str,
                                                          secret: str) -> None:
    made = make_message_id(number, instance_id="hd-1", secret=secret, domain="x.example",
                           nonce=nonce)
    mac = _full_digest_mac(secret, f"mid:hd-1:{number}:{nonce}", 10)
    assert made == f"<hd.{number}.{nonce}.{mac}@x.example>"
    assert ticket_from_message_id(made, instance_id="hd-1", secrets=[secret]) == number
    assert ticket_from_message_id(made, instance_id="hd-2", secrets=[secret]) is None


@given(number=st.integers(1, 10**9), agent=st.none() | st.integers(1, 10**6),
       secret=st.text(min_size=1, max_size=40))
def test_reply_addresses_verify_and_match_the_full_digest_mac(number: int, agent: int | None,
                                                              secret: str) -> None:
    made = make_reply_address("support@x.example", number, secret=secret, agent_id=agent)
    body = f"t{number}" + (f"a{agent}" if agent is not None else "")
    assert made == f"support+{body}.{_full_digest_mac(secret, 'plus:' + body, 16)}@x.example"
    token = parse_reply_address(made, secrets=[secret])
    assert token is not None and (token.ticket, token.agent_id) == (number, agent)
    assert parse_reply_address(made, secrets=[secret + "x"]) is None
