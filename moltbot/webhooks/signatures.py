"""Webhook signature checks: Stripe-style `t=…,v1=…` and GitHub-style `sha256=…` HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

Scheme = Literal["stripe", "github"]

STRIPE_HEADER = "Stripe-Signature"
GITHUB_HEADER = "X-Hub-Signature-256"
SIGNATURE_HEADERS: dict[str, str] = {"stripe": STRIPE_HEADER, "github": GITHUB_HEADER}

DEFAULT_TOLERANCE_SECONDS = 300

# A signature header is a few hundred bytes; anything far longer is not worth parsing.
_MAX_HEADER_CHARS = 4096


class SignatureError(Exception):
    """A request's signature is missing, malformed, wrong or too old; the message says which.

    The message never quotes the header, the body or the secret.
    """


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(expected: str, candidate: str) -> bool:
    # Compared as bytes: `compare_digest` raises on non-ASCII text, and a header may carry some.
    return hmac.compare_digest(expected.encode(), candidate.lower().encode())


def sign_stripe(body: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value a sender would send for `body` at `timestamp`."""
    return f"t={timestamp},v1={_hmac_hex(secret, f'{timestamp}.'.encode() + body)}"


def sign_github(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` header value GitHub would send for `body`."""
    return f"sha256={_hmac_hex(secret, body)}"


def verify_stripe(
    header: str | None,
    body: bytes,
    secret: str,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check a Stripe-style signature: one `t=` and any number of `v1=` entries.

    The signature is checked first and the timestamp second, so a caller without the secret
    learns nothing about the clock. Other schemes' entries (`v0=`) are ignored, as Stripe does.

    Args:
        header: the `Stripe-Signature` header value (None when absent).
        body: the raw request body, exactly as received.
        secret: the signing secret.
        now: the current Unix time.
        tolerance_seconds: how far the timestamp may lie in the past or the future.

    Raises:
        SignatureError: missing or malformed header, no matching `v1`, or a timestamp outside
            the tolerance.
    """
    if not header:
        raise SignatureError(f"missing {STRIPE_HEADER} header")
    if len(header) > _MAX_HEADER_CHARS:
        raise SignatureError(f"malformed {STRIPE_HEADER} header")
    timestamps: list[str] = []
    candidates: list[str] = []
    for item in header.split(","):
        name, separator, value = item.strip().partition("=")
        if not separator:
            continue
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            candidates.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        raise SignatureError(f"malformed {STRIPE_HEADER} header (needs one t=<unix seconds>)")
    if not candidates:
        raise SignatureError(f"malformed {STRIPE_HEADER} header (no v1 signature)")
    expected = _hmac_hex(secret, f"{timestamps[0]}.".encode() + body)
    # Every candidate is compared, in constant time, so timing tells nothing about which matched.
    matched = False
    for candidate in candidates:
        matched |= _same(expected, candidate)
    if not matched:
        raise SignatureError("signature does not match")
    if abs(now - int(timestamps[0])) > tolerance_seconds:
        raise SignatureError(
            f"signature timestamp is more than {tolerance_seconds} seconds from the gateway's clock"
        )


def verify_github(header: str | None, body: bytes, secret: str) -> None:
    """Check a GitHub-style `X-Hub-Signature-256: sha256=<hex>` signature of `body`.

    Raises:
        SignatureError: missing or malformed header, or a signature that does not match.
    """
    if not header:
        raise SignatureError(f"missing {GITHUB_HEADER} header")
    prefix, separator, candidate = header.strip().partition("=")
    if prefix != "sha256" or not separator or len(candidate) > _MAX_HEADER_CHARS:
        raise SignatureError(f"malformed {GITHUB_HEADER} header (expected sha256=<hex>)")
    if not _same(_hmac_hex(secret, body), candidate):
        raise SignatureError("signature does not match")


def verify_signature(
    scheme: Scheme,
    headers: dict[str, str],
    body: bytes,
    secret: str,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check `body` against the signature header of `scheme` found in `headers`.

    Args:
        scheme: `stripe` or `github`.
        headers: the request headers, with lower-case names.
        body: the raw request body.
        secret: the signing secret.
        now: the current Unix time (Stripe scheme only).
        tolerance_seconds: allowed clock distance of the Stripe timestamp.

    Raises:
        SignatureError: the signature is missing, malformed, wrong or outside the tolerance.
    """
    header = headers.get(SIGNATURE_HEADERS[scheme].lower())
    if scheme == "stripe":
        verify_stripe(header, body, secret, now=now, tolerance_seconds=tolerance_seconds)
    else:
        verify_github(header, body, secret)
