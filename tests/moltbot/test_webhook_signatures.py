"""Tests of the webhook signature checks: Stripe-style t=/v1= and GitHub-style sha256=."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from moltbot.webhooks.signatures import (
    SignatureError,
    sign_github,
    sign_stripe,
    verify_github,
    verify_signature,
    verify_stripe,
)

SECRET = "whsec_test_5f1e2d3c4b5a6978"
BODY = '{"id":"evt_1","type":"payment.failed","data":{"note":"결제 실패"}}'.encode()
NOW = 1_795_000_000


def test_stripe_signature_matches_a_hand_computed_hmac() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert sign_stripe(BODY, SECRET, NOW) == f"t={NOW},v1={expected}"
    verify_stripe(f"t={NOW},v1={expected}", BODY, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("header", "body", "secret", "now", "reason"),
    [
        (None, BODY, SECRET, NOW, "missing Stripe-Signature"),
        ("", BODY, SECRET, NOW, "missing Stripe-Signature"),
        (sign_stripe(BODY, SECRET, NOW), BODY + b" ", SECRET, NOW, "does not match"),
        (sign_stripe(BODY, "whsec_other", NOW), BODY, SECRET, NOW, "does not match"),
        (sign_stripe(BODY, SECRET, NOW - 301), BODY, SECRET, NOW, "300 seconds"),
        (sign_stripe(BODY, SECRET, NOW + 301), BODY, SECRET, NOW, "300 seconds"),
        (f"v1={'0' * 64}", BODY, SECRET, NOW, "needs one t="),
        (f"t=abc,v1={'0' * 64}", BODY, SECRET, NOW, "needs one t="),
        (f"t={NOW},t={NOW},v1={'0' * 64}", BODY, SECRET, NOW, "needs one t="),
        (f"t={NOW}", BODY, SECRET, NOW, "no v1"),
        (f"t={NOW},v0={'0' * 64}", BODY, SECRET, NOW, "no v1"),
        (f"t={NOW},v1=ä{'0' * 63}", BODY, SECRET, NOW, "does not match"),
    ],
    ids=[
        "absent",
        "empty",
        "tampered-body",
        "wrong-secret",
        "old-timestamp",
        "future-timestamp",
        "no-timestamp",
        "non-numeric-timestamp",
        "two-timestamps",
        "no-v1",
        "only-v0",
        "non-ascii",
    ],
)
def test_stripe_rejections_say_why_without_quoting_the_secret(
    header: str | None, body: bytes, secret: str, now: int, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason) as raised:
        verify_stripe(header, body, secret, now=now)

    assert SECRET not in str(raised.value)


def test_stripe_timestamps_within_five_minutes_either_way_are_accepted() -> None:
    for offset in (-300, 300):
        verify_stripe(sign_stripe(BODY, SECRET, NOW + offset), BODY, SECRET, now=NOW)


def test_a_wrong_signature_is_reported_before_a_stale_timestamp() -> None:
    stale_and_wrong = sign_stripe(BODY, "whsec_other", NOW - 3600)

    with pytest.raises(SignatureError, match="does not match"):
        verify_stripe(stale_and_wrong, BODY, SECRET, now=NOW)


def test_stripe_accepts_any_of_several_v1_signatures() -> None:
    # During a secret rotation Stripe signs with the old and the new secret.
    good = sign_stripe(BODY, SECRET, NOW).split("v1=")[1]
    other = sign_stripe(BODY, "whsec_old", NOW).split("v1=")[1]

    verify_stripe(f"t={NOW},v1={other},v1={good},v0=ignored", BODY, SECRET, now=NOW)
    verify_stripe(f"t={NOW}, v1={good.upper()}, v1={other}", BODY, SECRET, now=NOW)


def test_github_signature_good_and_bad() -> None:
    header = sign_github(BODY, SECRET)

    assert header == "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    verify_github(header, BODY, SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        verify_github(header, BODY + b"\n", SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        verify_github(sign_github(BODY, "other-secret"), BODY, SECRET)


@pytest.mark.parametrize(
    ("header", "reason"),
    [(None, "missing X-Hub-Signature-256"), ("sha1=abc", "malformed"), ("abc", "malformed")],
)
def test_github_missing_or_malformed_header(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_github(header, BODY, SECRET)


def test_verify_signature_reads_the_scheme_s_header() -> None:
    stripe_headers = {"stripe-signature": sign_stripe(BODY, SECRET, NOW)}
    github_headers = {"x-hub-signature-256": sign_github(BODY, SECRET)}

    verify_signature("stripe", stripe_headers, BODY, SECRET, now=NOW)
    verify_signature("github", github_headers, BODY, SECRET, now=NOW)
    with pytest.raises(SignatureError, match="missing X-Hub-Signature-256"):
        verify_signature("github", stripe_headers, BODY, SECRET, now=NOW)
    with pytest.raises(SignatureError, match="300 seconds"):
        verify_signature("stripe", stripe_headers, BODY, SECRET, now=NOW + 301)
