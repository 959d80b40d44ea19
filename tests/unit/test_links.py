"""Signed portal links: round trips, and every way a link is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from helpdesk.errors import DomainError
from helpdesk.links import (
    MAX_ID,
    SALTS,
    BadLink,
    LinkClaims,
    LinkExpired,
    LinkRevoked,
    LinkSigner,
    Purpose,
    is_id,
    rate_url,
    view_url,
)

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
KEY = "portal-key-2024"
TICKET, CONTACT = 42, 7
TICKET_SECRET = "tkt42-Secret-S3cr3t-value"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_signer(keys: str | list[str] = KEY, now: datetime = T0) -> LinkSigner:
    return LinkSigner(keys, view_max_age=timedelta(days=30), clock=FakeClock(now))


def secrets_of(mapping: dict[int, str]) -> Callable[[int], str | None]:
    """A ticket_secret_for lookup over a dict: None for a ticket that does not exist."""
    return mapping.get


CURRENT = secrets_of({TICKET: TICKET_SECRET, 43: "another-ticket-secret"})


def test_view_token_round_trips_to_its_claims() -> None:
    signer = make_signer()
    token = signer.sign(Purpose.VIEW, TICKET, CONTACT, TICKET_SECRET)
    claims = signer.verify(token, "view", ticket_secret_for=CURRENT)
    assert claims == LinkClaims(Purpose.VIEW, TICKET, CONTACT, {})
    assert claims.purpose == "view"


def test_extra_values_are_signed_and_returned() -> None:
    signer = make_signer()
    token = signer.sign("download", TICKET, CONTACT, TICKET_SECRET, attachment=17)
    claims = signer.verify(token, Purpose.DOWNLOAD, ticket_secret_for=CURRENT)
    assert dict(claims.extra) == {"attachment": 17}
    with pytest.raises(TypeError):
        claims.extra["attachment"] = 18  # type: ignore[index]


def test_claims_are_hashable_despite_extra() -> None:
    signer = make_signer()
    token = signer.sign("rate", TICKET, CONTACT, TICKET_SECRET, score=4)
    claims = signer.verify(token, "rate", ticket_secret_for=CURRENT)
    assert {claims: 1}[claims] == 1


def test_token_signed_for_view_is_refused_for_every_other_purpose() -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET)
    for purpose in Purpose:
        if purpose is Purpose.VIEW:
            continue
        with pytest.raises(BadLink):
            signer.verify(token, purpose, ticket_secret_for=CURRENT)


def test_token_with_a_rewritten_payload_is_refused() -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET)
    forged_payload = URLSafeTimedSerializer("anything").dump_payload([43, CONTACT, "x"]).decode()
    _, timestamp, signature = token.rsplit(".", 2)
    forged = f"{forged_payload}.{timestamp}.{signature}"
    with pytest.raises(BadLink):
        signer.verify(forged, "view", ticket_secret_for=CURRENT)


def test_token_signed_with_an_unknown_key_is_refused() -> None:
    token = make_signer("attacker-key").sign("view", TICKET, CONTACT, TICKET_SECRET)
    with pytest.raises(BadLink):
        make_signer().verify(token, "view", ticket_secret_for=CURRENT)


@settings(max_examples=200)
@given(data=st.data())
def test_changing_any_character_never_yields_other_claims(data: st.DataObject) -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET, note="x")
    index = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    char = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[index]))
    mutated = token[:index] + char + token[index + 1:]
    try:
        claims = signer.verify(mutated, "view", ticket_secret_for=CURRENT)
    except BadLink:
        return
    # A base64 character's unused low bits may change without changing the bytes.
    assert claims == signer.verify(token, "view", ticket_secret_for=CURRENT)


@given(garbage=st.text(max_size=300))
def test_arbitrary_text_is_refused_as_bad_link(garbage: str) -> None:
    with pytest.raises(BadLink):
        make_signer().verify(garbage, "view", ticket_secret_for=CURRENT)


@pytest.mark.parametrize("token", ["", "a.b.c", "x" * 5000, "é.é.é", "\ud800"])
def test_malformed_tokens_are_bad_links(token: str) -> None:
    with pytest.raises(BadLink):
        make_signer().verify(token, "view", ticket_secret_for=CURRENT)


def test_signed_payload_of_the_wrong_shape_is_refused() -> None:
    foreign = URLSafeTimedSerializer(
        KEY, salt=SALTS[Purpose.VIEW], signer_kwargs={"digest_method": hashlib.sha256}
    )
    for payload in ({"ticket": TICKET}, [TICKET, CONTACT], [True, CONTACT, "d"],
                    [TICKET, CONTACT, "d", ["not", "a", "dict"]], [-1, CONTACT, "d"]):
        token = foreign.dumps(payload)
        with pytest.raises(BadLink, match="not valid"):
            make_signer().verify(token, "view", ticket_secret_for=CURRENT)


def test_signed_ids_beyond_the_database_key_range_are_refused() -> None:
    foreign = URLSafeTimedSerializer(
        KEY, salt=SALTS[Purpose.VIEW], signer_kwargs={"digest_method": hashlib.sha256}
    )
    for payload in ([2222222222222222222222, CONTACT, "d"], [TICKET, 2**31, "d"],
                    [MAX_ID + 1, CONTACT, "d"]):
        with pytest.raises(BadLink, match="not valid"):
            make_signer().verify(foreign.dumps(payload), "view", ticket_secret_for=CURRENT)
    assert is_id(MAX_ID) and not is_id(MAX_ID + 1) and not is_id(True)


def test_genuine_signature_over_a_timestamp_past_year_9999_is_a_bad_link() -> None:
    class FarFuture(TimestampSigner):
        def get_timestamp(self) -> int:
            return 2**64 - 1

    forged = URLSafeTimedSerializer(KEY, salt=SALTS[Purpose.VIEW], signer=FarFuture,
                                    signer_kwargs={"digest_method": hashlib.sha256})
    with pytest.raises(BadLink):
        make_signer().verify(forged.dumps([TICKET, CONTACT, "d"]), "view",
                             ticket_secret_for=CURRENT)


def test_token_for_one_ticket_is_refused_for_another() -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET)
    with pytest.raises(BadLink) as caught:
        signer.verify(token, "view", ticket_secret_for=CURRENT, expected_ticket=43)
    assert "43" in caught.value.reason
    claims = signer.verify(token, "view", ticket_secret_for=CURRENT, expected_ticket=TICKET)
    assert claims.ticket == TICKET


def test_token_for_a_deleted_ticket_is_a_bad_link() -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET)
    with pytest.raises(BadLink):
        signer.verify(token, "view", ticket_secret_for=secrets_of({}))


def test_view_link_is_valid_up_to_its_max_age_and_expired_after() -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET)
    last_valid = T0 + timedelta(days=30)
    assert signer.verify(token, "view", ticket_secret_for=CURRENT, now=last_valid).ticket == TICKET
    with pytest.raises(LinkExpired) as caught:
        signer.verify(token, "view", ticket_secret_for=CURRENT,
                      now=last_valid + timedelta(seconds=1))
    assert caught.value.date_signed == T0
    assert caught.value.payload == LinkClaims(Purpose.VIEW, TICKET, CONTACT, {})
    assert caught.value.http_status == 410


def test_verify_reads_the_injected_clock_when_no_now_is_given() -> None:
    clock = FakeClock(T0)
    signer = LinkSigner([KEY], view_max_age=timedelta(days=30), clock=clock)
    token = signer.sign("rate", TICKET, CONTACT, TICKET_SECRET)
    clock.now = T0 + timedelta(days=14)
    assert signer.verify(token, "rate", ticket_secret_for=CURRENT).purpose == "rate"
    clock.now = T0 + timedelta(days=14, seconds=1)
    with pytest.raises(LinkExpired):
        signer.verify(token, "rate", ticket_secret_for=CURRENT)


@pytest.mark.parametrize(
    ("purpose", "lifetime"),
    [("view", timedelta(days=30)), ("rate", timedelta(days=14)),
     ("download", timedelta(days=30)), ("my-tickets", timedelta(hours=24))],
)
def test_each_purpose_has_its_default_lifetime(purpose: str, lifetime: timedelta) -> None:
    assert make_signer().max_age(purpose) == lifetime


def test_token_signed_far_in_the_future_is_refused() -> None:
    token = make_signer(now=T0 + timedelta(hours=1)).sign("view", TICKET, CONTACT, TICKET_SECRET)
    with pytest.raises(BadLink):
        make_signer().verify(token, "view", ticket_secret_for=CURRENT, now=T0)
    skewed = make_signer(now=T0 + timedelta(minutes=2)).sign(
        "view", TICKET, CONTACT, TICKET_SECRET)
    assert make_signer().verify(skewed, "view", ticket_secret_for=CURRENT, now=T0).ticket == 42


def test_rotating_the_ticket_secret_revokes_its_links() -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET)
    rotated = secrets_of({TICKET: "fresh-secret-after-rotation"})
    with pytest.raises(LinkRevoked) as caught:
        signer.verify(token, "view", ticket_secret_for=rotated)
    assert caught.value.http_status == 410
    assert isinstance(caught.value, DomainError)


def test_revocation_wins_over_expiry() -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET)
    rotated = secrets_of({TICKET: "fresh-secret-after-rotation"})
    with pytest.raises(LinkRevoked):
        signer.verify(token, "view", ticket_secret_for=rotated, now=T0 + timedelta(days=90))


def test_old_key_still_verifies_after_a_new_key_is_added() -> None:
    old_token = make_signer(["old-key"]).sign("view", TICKET, CONTACT, TICKET_SECRET)
    rotated = make_signer(["old-key", "new-key"])
    assert rotated.verify(old_token, "view", ticket_secret_for=CURRENT).ticket == TICKET


def test_new_tokens_are_signed_with_the_newest_key() -> None:
    new_token = make_signer(["old-key", "new-key"]).sign("view", TICKET, CONTACT, TICKET_SECRET)
    assert make_signer(["new-key"]).verify(new_token, "view", ticket_secret_for=CURRENT)
    with pytest.raises(BadLink):
        make_signer(["old-key"]).verify(new_token, "view", ticket_secret_for=CURRENT)


def test_retired_key_no_longer_verifies() -> None:
    old_token = make_signer(["old-key"]).sign("view", TICKET, CONTACT, TICKET_SECRET)
    with pytest.raises(BadLink):
        make_signer(["new-key"]).verify(old_token, "view", ticket_secret_for=CURRENT)


def test_ticket_secret_never_appears_in_the_token() -> None:
    token = make_signer().sign("view", TICKET, CONTACT, TICKET_SECRET, attachment=3)
    payload = URLSafeTimedSerializer("any").load_payload(token.rsplit(".", 2)[0].encode())
    assert payload[:2] == [TICKET, CONTACT]
    for part in (TICKET_SECRET, TICKET_SECRET[:8], TICKET_SECRET[-8:]):
        assert part not in token
        assert part not in repr(payload)


@pytest.mark.parametrize(
    "bad_kwargs",
    [{"secret_keys": []}, {"secret_keys": [""]}, {"view_max_age": timedelta(0)},
     {"rate_max_age": timedelta(days=-1)}],
)
def test_signer_refuses_unusable_settings(bad_kwargs: dict[str, object]) -> None:
    kwargs: dict[str, object] = {"secret_keys": [KEY], "view_max_age": timedelta(days=1)}
    kwargs.update(bad_kwargs)
    with pytest.raises(ValueError):
        LinkSigner(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ticket", "contact", "secret"),
    [(0, CONTACT, TICKET_SECRET), (TICKET, True, TICKET_SECRET), (TICKET, CONTACT, ""),
     (2**31, CONTACT, TICKET_SECRET)],
)
def test_sign_refuses_bad_ids_and_empty_secret(ticket: int, contact: int, secret: str) -> None:
    with pytest.raises(ValueError):
        make_signer().sign("view", ticket, contact, secret)


def test_unknown_purpose_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        make_signer().sign("admin", TICKET, CONTACT, TICKET_SECRET)


def test_naive_now_is_refused() -> None:
    signer = make_signer()
    token = signer.sign("view", TICKET, CONTACT, TICKET_SECRET)
    with pytest.raises(ValueError):
        signer.verify(token, "view", ticket_secret_for=CURRENT, now=datetime(2024, 3, 1))


def test_errors_show_a_safe_message_and_keep_the_reason_for_logs() -> None:
    signer = make_signer()
    with pytest.raises(BadLink) as caught:
        signer.verify("nope", "view", ticket_secret_for=CURRENT)
    assert str(caught.value) == "This link is not valid."
    assert caught.value.http_status == 403
    assert caught.value.reason


def test_view_url_joins_base_and_token() -> None:
    assert view_url("https://help.example.com/", "abc.def.ghi") == (
        "https://help.example.com/t/abc.def.ghi")
    assert view_url("https://example.com/desk", "tok") == "https://example.com/desk/t/tok"


def test_rate_url_adds_the_score_as_a_query_parameter() -> None:
    assert rate_url("https://help.example.com", "tok") == "https://help.example.com/csat/tok"
    assert rate_url("https://help.example.com/", "tok", score=4) == (
        "https://help.example.com/csat/tok?score=4")


@pytest.mark.parametrize("score", [0, 6, True, -1])
def test_rate_url_refuses_scores_outside_one_to_five(score: int) -> None:
    with pytest.raises(ValueError):
        rate_url("https://help.example.com", "tok", score=score)
