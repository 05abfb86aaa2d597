"""Stripe and generic payment events -> masked payment records, and the one-line refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.payment_failures.events import PaymentEventError, payment_record
from moltbot.state.payments import customer_key

WHEN = "2026-11-24T01:00:00+00:00"
SECRET = bytes(range(32))


def event(kind: str, payload: dict) -> dict:
    return {"id": "evt_1", "type": kind, "occurred_at": WHEN, "payload": payload}


def record(kind: str, payload: dict):
    return payment_record(event(kind, payload), source="stripe", inbox_id="i1",
                          default_currency="KRW", pseudonym_secret=SECRET)  # fmt: skip


def test_a_payment_intent_failure_takes_its_decline_code_charge_and_customer() -> None:
    intent = {
        "object": {
            "id": "pi_1",
            "amount": 1999,
            "currency": "usd",
            "customer": "cus_NffrFeUfNV2Hib",
            "receipt_email": "Minji.Kim@example.com",
            "last_payment_error": {
                "charge": "ch_1",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            },
        }
    }

    got = record("payment_intent.payment_failed", intent)

    assert (got.outcome, got.provider, got.attempt) == ("failed", "stripe", "ch_1")
    assert (got.amount_minor, got.currency, got.reason) == (1999, "USD", "insufficient_funds")
    assert got.customer_key == customer_key("cus_NffrFeUfNV2Hib", SECRET)
    assert got.customer_label == f"***@example.com #{got.customer_key[:6]}"
    assert got.occurred_at == datetime(2026, 11, 24, 1, tzinfo=UTC)


def test_a_charge_failure_is_the_same_attempt_and_customer_as_its_intent() -> None:
    charge = {
        "object": {
            "id": "ch_1",
            "amount": 45000,
            "currency": "krw",
            "customer": "cus_NffrFeUfNV2Hib",
            "failure_code": "card_declined",
            "failure_message": "Your card was declined.",
            "billing_details": {"email": None},
        }
    }

    got = record("charge.failed", charge)

    assert (got.attempt, got.amount_minor, got.currency, got.reason) == (
        "ch_1", 45000, "KRW", "card_declined"
    )  # fmt: skip
    assert got.customer_key == customer_key("cus_NffrFeUfNV2Hib", SECRET)
    assert got.customer_label.startswith("cus_…2Hib #")


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [(59000, None, 59000), (19.99, "usd", 1999), ("1250000", "KRW", 1250000), (1000, "JPY", 1000)],
)
def test_a_generic_failure_amount_in_major_units_becomes_minor_units(
    amount: object, currency: str | None, minor: int
) -> None:
    payload = {"order_id": "A-1", "amount": amount, "provider": "toss", "error_code": "LIMIT"}
    if currency:
        payload["currency"] = currency

    got = record("payment.failed", payload)

    assert got.amount_minor == minor
    assert (got.provider, got.reason, got.attempt) == ("toss", "limit", "event:evt_1")


def test_a_generic_event_keys_its_customer_by_e_mail_whatever_the_case() -> None:
    one = record("payment.failed", {"customer_email": "kim@example.com", "amount": 1})
    two = record("payment.failed", {"customer_email": " KIM@Example.com", "amount": 1})

    assert one.customer_key == two.customer_key == customer_key("kim@example.com", SECRET)
    assert "kim" not in one.customer_label


def test_a_success_has_no_reason() -> None:
    got = record("payment.succeeded", {"amount": 1000, "provider": "toss"})

    assert (got.outcome, got.reason) == ("succeeded", None)


@pytest.mark.parametrize(
    ("kind", "payload", "problem"),
    [
        ("invoice.paid", {}, "is not a payment event"),
        ("charge.failed", {"object": "ch_1"}, "'payload.object' must be an object"),
        ("charge.failed", {"object": {"id": "ch_1", "amount": "10", "currency": "usd"}},
         "'payload.object.amount' must be a whole number"),
        ("payment.failed", {"amount": "lots"}, "'payload.amount' must be a number"),
        ("payment.failed", {"amount": 1, "currency": "원화"}, "three-letter ISO 4217"),
    ],
)  # fmt: skip
def test_an_unreadable_event_is_named_by_its_field_never_its_value(
    kind: str, payload: dict, problem: str
) -> None:
    with pytest.raises(PaymentEventError, match=problem) as raised:
        record(kind, payload)

    assert "lots" not in str(raised.value)


def test_the_customer_key_is_keyed_so_a_guess_cannot_be_confirmed_without_the_secret() -> None:
    import hashlib

    plain = hashlib.sha256(b"kim@example.com").hexdigest()

    assert customer_key("kim@example.com", SECRET) != customer_key("kim@example.com", b"x" * 32)
    assert customer_key("kim@example.com", SECRET) not in plain


def test_the_ledger_makes_its_pseudonym_secret_once(tmp_path) -> None:
    from moltbot.state.ledger import Ledger
    from moltbot.state.payments import pseudonym_secret

    now = datetime(2026, 12, 4, tzinfo=UTC)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        first = pseudonym_secret(ledger, now=now)
        again = pseudonym_secret(ledger, now=now)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        reopened = pseudonym_secret(ledger, now=now)

    assert len(first) == 32 and first == again == reopened
