"""Decide whether mail that claims to come from an agent really does, before any command runs.

A ``From:`` header is free text: anyone can write ``From: agent@support.example.com``.
Agent mail may drive tickets only when at least one of these holds, checked in order:

(a) **Signed reply address.** A recipient (envelope or To/Cc) is the agent's own signed
    plus-address, ``support+t42a7.<mac>@``, which only agent notifications carry; its HMAC
    binds ticket *and* agent, so it must name this agent (``agent_id``).
(b) **Authentication-Results** (RFC 8601) added by a relay we trust: only headers whose
    authserv-id is listed in ``[commands] trusted_authserv_ids`` are read; any other
    (forged, or from a hop we do not know) is ignored. ``dkim=pass`` counts when the
    signing domain (``header.d``, else the domain of ``header.i``) is aligned with the
    From domain; ``spf=pass`` counts, when ``accept_spf_pass``, if the ``smtp.mailfrom``
    domain is aligned. Results are read only from mail that came *through* that relay
    (``via_trusted_relay``): the MTA in front of the pipe or LMTP, the mailbox an IMAP
    poller reads, or an SMTP client listed in ``[commands] trusted_relay_hosts``. On mail
    that reached the built-in SMTP receiver from anywhere else, any header with our
    authserv-ids was written by the sender and is ignored (RFC 8601 section 5: the
    relay removes copies of its own authserv-id that arrive from outside).
(c) **DKIM verified here** (dkimpy) when ``verify_dkim`` is on: a valid signature whose
    ``d=`` is aligned with the From domain. DNS lookups go through ``dnsfunc``.

"Aligned" is DMARC's relaxed alignment without a public-suffix list: the same domain, or
one a subdomain of the other, where the shorter has at least two labels and is not a
two-level public suffix such as ``co.uk``.

Everything here is a function of its inputs except the DNS lookups of (c).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Literal

from helpdesk.config import CommandSettings
from helpdesk.mailtokens import parse_reply_address

__all__ = [
    "AuthResult",
    "AuthResultsHeader",
    "MethodResult",
    "authenticate_agent",
    "check_authentication_results",
    "check_reply_address",
    "domains_aligned",
    "parse_authentication_results",
    "verify_dkim",
]

Method = Literal["reply_address", "authentication_results", "dkim", ""]
DnsFunc = Callable[..., Any]

_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or", "go"})
_TOKEN_RE = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^\s"])+')


@dataclass(frozen=True)
class AuthResult:
    """Whether an agent's mail is authenticated, how, and why (for the log and the agent).

    Attributes:
        ok: commands may run.
        reason: one line, safe to mail back to the agent.
        method: what authenticated it ("" when nothing did).
    """

    ok: bool
    reason: str
    method: Method = ""
    ticket: int | None = None
    """With ``reply_address``: the ticket that address is bound to (commands act there)."""


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` clause of an Authentication-Results header."""

    method: str
    result: str
    props: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class AuthResultsHeader:
    """An Authentication-Results header: who wrote it and what it says."""

    authserv_id: str
    results: tuple[MethodResult, ...]


# -- alignment --------------------------------------------------------------------------------


def _clean_domain(domain: str) -> str:
    return domain.strip().strip(".").lower()


def _is_registrable(domain: str) -> bool:
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        return False
    # co.uk, com.au, ... are suffixes, not anybody's domain
    return not (len(labels) == 2 and len(labels[1]) == 2 and labels[0] in _SECOND_LEVEL)


def domains_aligned(a: str, b: str) -> bool:
    """Relaxed alignment: equal, or one a subdomain of the other (which is registrable).

    >>> domains_aligned("mail.example.com", "example.com")
    True
    >>> domains_aligned("example.co.uk", "other.co.uk")
    False
    """
    a, b = _clean_domain(a), _clean_domain(b)
    if not a or not b:
        return False
    if a == b:
        return _is_registrable(a)
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return long_.endswith("." + short) and _is_registrable(short)


def _domain_of(address: str) -> str:
    return _clean_domain(address.strip().strip("<>").rpartition("@")[2])


# -- (a) the signed reply address -------------------------------------------------------------


def check_reply_address(recipients: Iterable[str], *, agent_id: int,
                        secrets: Sequence[str]) -> AuthResult | None:
    """Authenticate by the agent's own signed reply address among the recipients.

    Returns:
        An ok result when a recipient verifies and is bound to ``agent_id``; a refusal
        when a signed address verifies but is bound to another agent or to none (the
        requesters' address); None when no recipient carries a valid signed token.
    """
    seen_unbound = False
    for rcpt in recipients:
        token = parse_reply_address(rcpt, secrets=secrets)
        if token is None:
            continue
        if token.agent_id == agent_id:
            return AuthResult(True, "sent to your signed reply address", "reply_address",
                              ticket=token.ticket)
        seen_unbound = True
    if seen_unbound:
        return AuthResult(False, "the reply address used is not your own signed reply address")
    return None


# -- (b) Authentication-Results ---------------------------------------------------------------


def _strip_comments(value: str) -> str:
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in value:
        if depth == 0 and quoted:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if not depth:
                out.append(" ")
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _split_clauses(value: str) -> list[str]:
    clauses: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            clauses.append("".join(current))
            current = []
        else:
            current.append(ch)
    clauses.append("".join(current))
    return [c.strip() for c in clauses]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_authentication_results(value: str) -> AuthResultsHeader | None:
    """Read one Authentication-Results header value; None when it is malformed.

    Comments are dropped, quoted strings kept whole; ``method/version=result`` keeps the
    method name only; names are lowercased, property values are not.
    """
    clauses = _split_clauses(_strip_comments(" ".join(value.split())))
    head = clauses[0].split()
    if not head:
        return None
    authserv_id = head[0].lower()
    results: list[MethodResult] = []
    for clause in clauses[1:]:
        tokens = _TOKEN_RE.findall(re.sub(r"\s*=\s*", "=", clause))
        if not tokens or "=" not in tokens[0]:
            continue  # "none", or garbage: no result to use
        method, _, result = tokens[0].partition("=")
        props: dict[str, str] = {}
        for token in tokens[1:]:
            name, sep, prop = token.partition("=")
            if sep and "." in name:
                props.setdefault(name.lower(), _unquote(prop))
        results.append(MethodResult(method.split("/")[0].lower(), result.lower(), props))
    return AuthResultsHeader(authserv_id, tuple(results))


def check_authentication_results(values: Iterable[str], *, from_domain: str,
                                 settings: CommandSettings) -> AuthResult | None:
    """Authenticate by Authentication-Results headers of trusted relays.

    Args:
        values: every Authentication-Results header value of the message, any order.
        from_domain: the domain of the From address.
        settings: ``trusted_authserv_ids`` and ``accept_spf_pass``.

    Returns:
        An ok result for an aligned ``dkim=pass`` (or ``spf=pass`` when accepted) in a
        header of a trusted authserv-id; a refusal naming what was seen when trusted
        headers exist but do not pass; None when no trusted header is present.
    """
    trusted = {t.strip().lower() for t in settings.trusted_authserv_ids if t.strip()}
    seen: list[str] = []
    for value in values:
        header = parse_authentication_results(value)
        if header is None or header.authserv_id not in trusted:
            continue  # forged, or from a hop we do not know: worth nothing
        for r in header.results:
            if r.method == "dkim":
                signer = r.props.get("header.d") or _domain_of(r.props.get("header.i", ""))
                if r.result == "pass" and domains_aligned(signer, from_domain):
                    return AuthResult(True, f"dkim=pass for {signer} ({header.authserv_id})",
                                      "authentication_results")
                seen.append(f"dkim={r.result}" + (f" for {signer}" if signer else ""))
            elif r.method == "spf":
                mailfrom = _domain_of(r.props.get("smtp.mailfrom", ""))
                if (settings.accept_spf_pass and r.result == "pass"
                        and domains_aligned(mailfrom, from_domain)):
                    return AuthResult(True, f"spf=pass for {mailfrom} ({header.authserv_id})",
                                      "authentication_results")
                seen.append(f"spf={r.result}" + (f" for {mailfrom}" if mailfrom else ""))
    if not seen:
        return None
    return AuthResult(False, "the trusted relay found no aligned pass: " + ", ".join(seen))


# -- (c) DKIM verified here -------------------------------------------------------------------


def verify_dkim(raw: bytes, *, from_domain: str, dnsfunc: DnsFunc | None = None) -> AuthResult:
    """Verify the message's DKIM signatures with dkimpy; ok for a valid aligned one.

    Args:
        raw: the message bytes as received.
        from_domain: the domain of the From address.
        dnsfunc: TXT lookup for dkimpy (tests pass a local key); default real DNS.
    """
    import dkim

    try:
        signer = dkim.DKIM(raw)
        count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    except Exception as exc:  # dkimpy raises its own and parser errors alike
        return AuthResult(False, f"DKIM: the message cannot be read ({type(exc).__name__})")
    if not count:
        return AuthResult(False, "DKIM: the message is not signed")
    # Looked up at call time, not bound at import, so a deployment or test can swap it.
    lookup = dnsfunc if dnsfunc is not None else dkim.get_txt
    problems: list[str] = []
    for idx in range(count):
        try:
            valid = signer.verify(idx=idx, dnsfunc=lookup)
        except Exception as exc:  # DNS failures, bad keys, malformed signatures
            problems.append(f"signature {idx + 1}: {type(exc).__name__}")
            continue
        domain = (signer.domain or b"").decode("ascii", "replace")
        if valid and domains_aligned(domain, from_domain):
            return AuthResult(True, f"DKIM signature of {domain} verified", "dkim")
        problems.append(f"signature {idx + 1} ({domain or '?'}): "
                        + ("not aligned with From" if valid else "does not verify"))
    return AuthResult(False, "DKIM: " + "; ".join(problems))


# -- all together -----------------------------------------------------------------------------


def authenticate_agent(raw: bytes, *, agent_id: int, from_address: str,
                       recipients: Sequence[str], secrets: Sequence[str],
                       settings: CommandSettings, via_trusted_relay: bool = True,
                       dnsfunc: DnsFunc | None = None) -> AuthResult:
    """Decide whether mail from an agent's address may run commands.

    Args:
        raw: the message as received (its Authentication-Results and DKIM headers).
        agent_id: the agent the From address belongs to.
        from_address: the From address.
        recipients: envelope and header recipients.
        secrets: the signing secrets of reply addresses, newest last.
        settings: the ``[commands]`` settings.
        via_trusted_relay: the mail came through the relay whose Authentication-Results
            we trust; when False, those headers are the sender's own words and ignored.
        dnsfunc: DNS TXT lookup for DKIM verification (tests).

    Returns:
        The first method that authenticates, else a refusal whose reason says what was
        missing, in words an agent can act on.
    """
    by_address = check_reply_address(recipients, agent_id=agent_id, secrets=secrets)
    if by_address is not None and by_address.ok:
        return by_address
    from_domain = _domain_of(from_address)
    headers = BytesHeaderParser(policy=compat32).parsebytes(_header_block(raw))
    values = [str(v) for v in headers.get_all("Authentication-Results", [])]
    reasons = [by_address.reason] if by_address is not None else []
    if settings.trusted_authserv_ids and not via_trusted_relay:
        reasons.append("Authentication-Results ignored: the mail did not come through "
                       "the trusted relay")
    elif settings.trusted_authserv_ids:
        by_relay = check_authentication_results(values, from_domain=from_domain,
                                                settings=settings)
        if by_relay is not None and by_relay.ok:
            return by_relay
        reasons.append(by_relay.reason if by_relay is not None
                       else "no Authentication-Results from a trusted relay")
    if settings.verify_dkim:
        by_dkim = verify_dkim(raw, from_domain=from_domain, dnsfunc=dnsfunc)
        if by_dkim.ok:
            return by_dkim
        reasons.append(by_dkim.reason)
    if not reasons:
        reasons.append("the mail did not come to your signed reply address")
    return AuthResult(False, "; ".join(reasons))


def _header_block(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, _ = raw.partition(sep)
        if found:
            return head + sep
    return raw
