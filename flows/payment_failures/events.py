"""Webhook payment events (Stripe and a generic shape) -> `PaymentRecord`s, masked (pure).

Field names follow the Stripe API reference: a `payment_intent.*` event's `data.object` is a
PaymentIntent (https://stripe.com/docs/api/payment_intents: `id`, `amount` in the smallest
currency unit, `currency`, `customer`, `receipt_email`, `latest_charge`, `last_payment_error`
with `charge`, `code`, `decline_code`, `message`), a `charge.*` event's is a Charge (`id`,
`amount`, `currency`, `customer`, `payment_intent`, `failure_code`, `failure_message`,
`billing_details.email`). Amounts are in the minor unit except for zero-decimal currencies
such as KRW and JPY (https://stripe.com/docs/currencies#zero-decimal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from moltbot.formatting import minor_unit_digits
from moltbot.masking import mask_text
from moltbot.state.payments import Outcome, PaymentRecord, customer_key

STRIPE_FAILURES = ("payment_intent.payment_failed", "charge.failed")
STRIPE_SUCCESSES = ("payment_intent.succeeded", "charge.succeeded")
GENERIC_FAILURE = "payment.failed"
GENERIC_SUCCESS = "payment.succeeded"
FAILURE_TYPES = (*STRIPE_FAILURES, GENERIC_FAILURE)
SUCCESS_TYPES = (*STRIPE_SUCCESSES, GENERIC_SUCCESS)
EVENT_TYPES = (*FAILURE_TYPES, *SUCCESS_TYPES)
"""Every event type the automation takes (its webhook routes)."""

UNKNOWN_REASON = "unknown"
_TEXT_MAX = 120


class PaymentEventError(ValueError):
    """An event the automation cannot read; the message names the field, never its value."""


def payment_record(
    event: Mapping[str, Any],
    *,
    source: str,
    inbox_id: str | None,
    default_currency: str,
    pseudonym_secret: bytes,
) -> PaymentRecord:
    """The record of one normalised webhook event `{"id", "type", "occurred_at", "payload"}`.

    Args:
        event: the event as the gateway stored it in the inbox.
        source: the gateway source it came through.
        inbox_id: its inbox entry.
        default_currency: the currency of a generic event that names none.
        pseudonym_secret: the key of customers' keyed hashes (`customer_key`).

    Raises:
        PaymentEventError: an unknown type, or a missing or mistyped field.
    """
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise PaymentEventError(f"event type {str(kind)[:60]!r} is not a payment event")
    event_id = _text(event.get("id"), "id")
    occurred = _time(event.get("occurred_at"), "occurred_at")
    payload = event.get("payload")
    if not isinstance(payload, Mapping):
        raise PaymentEventError("'payload' must be an object")
    outcome: Outcome = "failed" if kind in FAILURE_TYPES else "succeeded"
    if kind in (*STRIPE_FAILURES, *STRIPE_SUCCESSES):
        fields = _stripe(kind, payload, pseudonym_secret)
    else:
        fields = _generic(payload, default_currency, occurred, pseudonym_secret)
    occurred = fields.pop("occurred_at", occurred)
    record = PaymentRecord(
        source=source,
        event_id=event_id,
        outcome=outcome,
        occurred_at=occurred,
        inbox_id=inbox_id,
        **fields,
    )
    if outcome == "succeeded":
        record = replace(record, reason=None)
    elif record.attempt == "":
        record = replace(record, attempt=f"event:{event_id}")
    return record


# --------------------------------------------------------------------------- Stripe


def _stripe(kind: str, payload: Mapping[str, Any], secret: bytes) -> dict[str, Any]:
    obj = payload.get("object")
    if not isinstance(obj, Mapping):
        raise PaymentEventError("'payload.object' must be an object (Stripe's data.object)")
    object_id = _text(obj.get("id"), "payload.object.id")
    amount = _minor_amount(obj.get("amount"), "payload.object.amount")
    currency = _currency(obj.get("currency"), "payload.object.currency")
    customer = _optional_text(obj.get("customer"), "payload.object.customer")
    if kind.startswith("payment_intent."):
        error = obj.get("last_payment_error") or {}
        if not isinstance(error, Mapping):
            raise PaymentEventError("'payload.object.last_payment_error' must be an object")
        reason = _optional_text(error.get("decline_code"), "last_payment_error.decline_code")
        reason = reason or _optional_text(error.get("code"), "last_payment_error.code")
        email = _optional_text(obj.get("receipt_email"), "payload.object.receipt_email")
        charge = _optional_text(error.get("charge"), "last_payment_error.charge")
        charge = charge or _optional_text(obj.get("latest_charge"), "payload.object.latest_charge")
        # The charge names the attempt, so its `charge.*` event is the same failure; an
        # intent that failed before any charge (authentication) is an attempt of its own.
        attempt = charge or ""
    else:
        reason = _optional_text(obj.get("failure_code"), "payload.object.failure_code")
        details = obj.get("billing_details") or {}
        if not isinstance(details, Mapping):
            raise PaymentEventError("'payload.object.billing_details' must be an object")
        email = _optional_text(details.get("email"), "payload.object.billing_details.email")
        attempt = object_id
    return {
        "provider": "stripe",
        "attempt": attempt,
        "amount_minor": amount,
        "currency": currency,
        "reason": _reason(reason),
        **_customer(customer, email, secret),
    }


def _minor_amount(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PaymentEventError(f"{field!r} must be a whole number of the minor unit, 0 or more")
    return value


# --------------------------------------------------------------------------- generic


def _generic(
    payload: Mapping[str, Any], default_currency: str, occurred: datetime, secret: bytes
) -> dict:
    currency = (
        _currency(payload["currency"], "payload.currency")
        if payload.get("currency") is not None
        else default_currency.upper()
    )
    amount = payload.get("amount")
    minor = None if amount is None else _major_to_minor(amount, currency, "payload.amount")
    reason = _optional_text(payload.get("error_code"), "payload.error_code")
    reason = reason or _optional_text(payload.get("reason"), "payload.reason")
    fields: dict[str, Any] = {
        "provider": _optional_text(payload.get("provider"), "payload.provider") or "unknown",
        # A generic event is one attempt of its own (filled in with the event id).
        "attempt": "",
        "amount_minor": minor,
        "currency": currency,
        "reason": _reason(reason),
        **_customer(
            _optional_text(payload.get("customer_id"), "payload.customer_id"),
            _optional_text(payload.get("customer_email"), "payload.customer_email"),
            secret,
        ),
    }
    if payload.get("occurred_at") is not None:
        fields["occurred_at"] = _time(payload["occurred_at"], "payload.occurred_at")
    else:
        fields["occurred_at"] = occurred
    return fields


def _major_to_minor(value: Any, currency: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PaymentEventError(f"{field!r} must be a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise PaymentEventError(f"{field!r} must be a number") from None
    if not amount.is_finite() or amount < 0:
        raise PaymentEventError(f"{field!r} must be a number, 0 or more")
    scaled = amount.scaleb(minor_unit_digits(currency))
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------- fields


def _customer(customer_id: str | None, email: str | None, secret: bytes) -> dict[str, str | None]:
    """The customer's key (hash of the id, else the e-mail) and a masked label."""
    identity = customer_id or email
    if identity is None:
        return {"customer_key": None, "customer_label": None}
    key = customer_key(identity, secret)
    if email:
        shown = mask_text(email.strip(), emails="keep-domain")
    else:
        # An id is not personal by itself, but only its end is needed to tell customers apart.
        prefix = customer_id.split("_", 1)[0] + "_" if "_" in customer_id else ""
        shown = f"{prefix}…{customer_id[-4:]}"
    # The key's start tells two `***@example.com` customers apart without naming either.
    return {"customer_key": key, "customer_label": f"{shown} #{key[:6]}"}


def _reason(value: str | None) -> str:
    if not value:
        return UNKNOWN_REASON
    return mask_text(value.strip().lower())[:64] or UNKNOWN_REASON


def _text(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise PaymentEventError(f"{field!r} must be a non-empty text")
    text = str(value).strip()
    if len(text) > 255:
        raise PaymentEventError(f"{field!r} is longer than 255 characters")
    return text


def _optional_text(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):
        # Stripe expands some ids into objects (`customer`, `latest_charge`) when asked to.
        value = value.get("id")
        if value is None:
            return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PaymentEventError(f"{field!r} must be a text")
    text = str(value).strip()
    if len(text) > _TEXT_MAX:
        raise PaymentEventError(f"{field!r} is longer than {_TEXT_MAX} characters")
    return text or None


def _currency(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
        raise PaymentEventError(f"{field!r} must be a three-letter ISO 4217 code")
    return value.strip().upper()


def _time(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PaymentEventError(f"{field!r} is not an ISO 8601 time") from None
    else:
        raise PaymentEventError(f"{field!r} must be an ISO 8601 time")
    if moment.tzinfo is None:
        raise PaymentEventError(f"{field!r} needs a UTC offset (e.g. +09:00)")
    return moment.astimezone(UTC)
