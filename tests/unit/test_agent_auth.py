"""Tests for mailgate.agent_auth: is mail from an agent's address really from the agent?"""

from __future__ import annotations

import base64
from collections.abc import Callable

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.config import CommandSettings
from helpdesk.mailtokens import make_reply_address
from mailgate.agent_auth import (
    authenticate_agent,
    check_authentication_results,
    check_reply_address,
    domains_aligned,
    parse_authentication_results,
    verify_dkim,
)

SECRETS = ("old-secret", "test-secret")
SUPPORT = "support@support.example.com"
BOB = "bob@support.example.com"
RELAY = "mx.support.example.com"
TRUSTED = CommandSettings(trusted_authserv_ids=(RELAY,))


def message(*headers: str, sender: str = BOB) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (f"{head}From: Bob <{sender}>\r\nTo: {SUPPORT}\r\nSubject: Re: [TKT-000001] x\r\n"
            "Message-ID: <a1@support.example.com>\r\n\r\n#close\r\nDone.\r\n").encode()


def auth(raw: bytes, *, settings: CommandSettings = TRUSTED, recipients: tuple[str, ...] = (),
         dnsfunc: Callable[..., bytes] | None = None) -> tuple[bool, str, str]:
    result = authenticate_agent(raw, agent_id=7, from_address=BOB, recipients=recipients,
                                secrets=SECRETS, settings=settings, dnsfunc=dnsfunc)
    return result.ok, result.method, result.reason


# -- (a) signed reply address -------------------------------------------------------------------

def test_the_agents_own_signed_reply_address_authenticates() -> None:
    signed = make_reply_address(SUPPORT, 1, secret="test-secret", agent_id=7)
    assert auth(message(), settings=CommandSettings(), recipients=("x@y.example", signed))[:2] \
        == (True, "reply_address")


def test_an_address_signed_with_an_older_secret_still_authenticates() -> None:
    signed = make_reply_address(SUPPORT, 1, secret="old-secret", agent_id=7)
    assert check_reply_address([signed], agent_id=7, secrets=SECRETS).ok  # type: ignore[union-attr]


@pytest.mark.parametrize("address", [
    make_reply_address(SUPPORT, 1, secret="test-secret", agent_id=8),  # another agent's
    make_reply_address(SUPPORT, 1, secret="test-secret"),  # the requesters' address
])
def test_a_signed_address_not_bound_to_this_agent_is_refused(address: str) -> None:
    result = check_reply_address([address], agent_id=7, secrets=SECRETS)
    assert result is not None and not result.ok and "not your own" in result.reason


def test_a_tampered_or_unsigned_address_is_no_evidence() -> None:
    signed = make_reply_address(SUPPORT, 1, secret="test-secret", agent_id=7)
    local, _, domain = signed.partition("@")
    tampered = [signed.replace("+t1a7.", "+t2a7."), signed.replace("a7.", "a8."),
                f"{local[:-1]}{'x' if local[-1] != 'x' else 'y'}@{domain}", SUPPORT,
                make_reply_address(SUPPORT, 1, secret="wrong-secret", agent_id=7)]
    assert check_reply_address(tampered, agent_id=7, secrets=SECRETS) is None
    assert auth(message(), recipients=tuple(tampered))[0] is False


# -- (b) Authentication-Results -----------------------------------------------------------------

def test_parses_methods_properties_comments_and_versions() -> None:
    header = parse_authentication_results(
        'MX.Support.Example.com 1; dkim/1=pass (1024-bit key) header.d=Example.com '
        'header.s=sel; spf=pass smtp.mailfrom="odd;local"@example.com; dmarc=pass')
    assert header is not None and header.authserv_id == "mx.support.example.com"
    assert [(r.method, r.result) for r in header.results] == [
        ("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]
    assert header.results[0].props == {"header.d": "Example.com", "header.s": "sel"}
    assert header.results[1].props["smtp.mailfrom"] == '"odd;local"@example.com'


def test_no_result_header_parses_to_no_results() -> None:
    header = parse_authentication_results("mx.example.com; none")
    assert header is not None and header.results == ()
    assert parse_authentication_results("   ") is None


@given(st.text(max_size=300))
def test_parsing_never_raises(value: str) -> None:
    parse_authentication_results(value)
    check_authentication_results([value], from_domain="support.example.com", settings=TRUSTED)


@pytest.mark.parametrize("value", [
    f"{RELAY}; dkim=pass header.d=support.example.com",
    f"{RELAY}; dkim=pass header.d=example.com",  # parent domain of From: relaxed alignment
    f"{RELAY}; dkim=pass header.i=bob@mail.support.example.com",
    f"{RELAY}; dkim=fail header.d=evil.example; dkim=pass header.d=support.example.com",
    f"{RELAY}; spf=pass smtp.mailfrom=bounces@support.example.com",
])
def test_trusted_aligned_pass_authenticates(value: str) -> None:
    assert auth(message(f"Authentication-Results: {value}"))[:2] == (
        True, "authentication_results")


@pytest.mark.parametrize("value", [
    "mx.evil.example; dkim=pass header.d=support.example.com",  # untrusted authserv-id
    f"{RELAY}.evil.example; dkim=pass header.d=support.example.com",
    f"{RELAY}; dkim=pass header.d=evil.example",  # not aligned
    f"{RELAY}; dkim=pass header.d=example.com.evil.example",
    f"{RELAY}; dkim=fail header.d=support.example.com",
    f"{RELAY}; dkim=neutral header.d=support.example.com",
    f"{RELAY}; spf=pass smtp.mailfrom=x@evil.example",
    f"{RELAY}; spf=softfail smtp.mailfrom=x@support.example.com",
    f"{RELAY}; none",
    f"{RELAY} (dkim=pass header.d=support.example.com); spf=fail",  # a comment is no result
])
def test_untrusted_unaligned_or_failing_results_do_not_authenticate(value: str) -> None:
    assert auth(message(f"Authentication-Results: {value}"))[0] is False


def test_spf_pass_counts_only_when_accepted() -> None:
    raw = message(f"Authentication-Results: {RELAY}; spf=pass smtp.mailfrom=b@support.example.com")
    no_spf = CommandSettings(trusted_authserv_ids=(RELAY,), accept_spf_pass=False)
    assert auth(raw, settings=no_spf)[0] is False


def test_a_forged_header_beside_the_relays_own_is_ignored() -> None:
    raw = message("Authentication-Results: mx.evil.example; dkim=pass header.d=support.example.com",
                  f"Authentication-Results: {RELAY}; dkim=fail header.d=support.example.com")
    ok, _, reason = auth(raw)
    assert not ok and "dkim=fail" in reason


def test_without_trusted_ids_no_header_counts() -> None:
    raw = message(f"Authentication-Results: {RELAY}; dkim=pass header.d=support.example.com")
    assert auth(raw, settings=CommandSettings())[0] is False


@pytest.mark.parametrize(("a", "b", "aligned"), [
    ("example.com", "example.com", True),
    ("mail.example.com", "example.com", True),
    ("example.com", "a.b.example.com", True),
    ("Example.COM.", "example.com", True),
    ("example.com", "example.org", False),
    ("notexample.com", "example.com", False),
    ("com", "example.com", False),
    ("co.uk", "example.co.uk", False),
    ("example.co.uk", "other.co.uk", False),
    ("", "example.com", False),
])
def test_domain_alignment(a: str, b: str, aligned: bool) -> None:
    assert domains_aligned(a, b) is aligned


# -- (c) DKIM verified here ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def key() -> tuple[bytes, Callable[..., bytes]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        name = name.decode() if isinstance(name, bytes) else name
        return record if name.rstrip(".") == "sel._domainkey.support.example.com" else b""

    return pem, dnsfunc


def signed_message(pem: bytes, domain: str = "support.example.com") -> bytes:
    raw = message()
    return dkim.sign(raw, b"sel", domain.encode(), pem,
                     include_headers=[b"from", b"to", b"subject", b"message-id"]) + raw


def test_dkim_signature_verified_here_authenticates(key: tuple[bytes, Callable[..., bytes]]
                                                    ) -> None:
    pem, dnsfunc = key
    settings = CommandSettings(verify_dkim=True)
    assert auth(signed_message(pem), settings=settings, dnsfunc=dnsfunc)[:2] == (True, "dkim")


def test_dkim_fails_on_a_changed_body_a_missing_key_or_another_domain(
        key: tuple[bytes, Callable[..., bytes]]) -> None:
    pem, dnsfunc = key
    tampered = signed_message(pem).replace(b"#close", b"#merge TKT-9")
    assert not verify_dkim(tampered, from_domain="support.example.com", dnsfunc=dnsfunc).ok
    assert not verify_dkim(signed_message(pem), from_domain="support.example.com",
                           dnsfunc=lambda name, timeout=5: b"").ok
    other = signed_message(pem, "evil.example")
    assert not verify_dkim(other, from_domain="support.example.com", dnsfunc=dnsfunc).ok
    assert "not signed" in verify_dkim(message(), from_domain="support.example.com").reason


def test_dns_failure_is_a_refusal_not_a_crash(key: tuple[bytes, Callable[..., bytes]]) -> None:
    pem, _ = key

    def broken(name: bytes, timeout: int = 5) -> bytes:
        raise OSError("no DNS here")

    result = verify_dkim(signed_message(pem), from_domain="support.example.com", dnsfunc=broken)
    assert not result.ok and result.reason.startswith("DKIM:")


def test_dkim_is_not_checked_unless_configured(key: tuple[bytes, Callable[..., bytes]]) -> None:
    pem, dnsfunc = key
    assert auth(signed_message(pem), settings=CommandSettings(), dnsfunc=dnsfunc)[0] is False
