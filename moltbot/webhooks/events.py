"""Normalising verified webhook bodies to moltbot's event shape: id, type, occurred_at, payload."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from moltbot.webhooks.signatures import Scheme

MAX_ID_CHARS = 255
"""Longest event id or type accepted (the inbox columns' width)."""

GITHUB_DELIVERY_HEADER = "X-GitHub-Delivery"
GITHUB_EVENT_HEADER = "X-GitHub-Event"


class EventError(ValueError):
    """The body is not an event the gateway can take (answered 400); the message says why.

    The message names what is missing or wrong, never the body's content.
    """


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object.

    Raises:
        EventError: not UTF-8 JSON, or JSON that is not an object.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EventError("body is not valid JSON") from None
    if not isinstance(document, dict):
        raise EventError("body must be a JSON object")
    return document


def normalize_event(
    scheme: Scheme,
    document: dict[str, Any],
    headers: Mapping[str, str],
    *,
    received_at: datetime,
) -> dict[str, Any]:
    """The event `{"id", "type", "occurred_at", "payload"}` a verified request carries.

    Stripe scheme: `id` and `type` from the body, `occurred_at` from `created` (Unix seconds;
    the receive time when absent), `payload` is the body's `data` object (`{}` when absent).
    GitHub scheme: `id` from the `X-GitHub-Delivery` header, `type` from `X-GitHub-Event` plus
    `.<action>` when the body has a string `action` (`issues.opened`), `occurred_at` the receive
    time (GitHub sends none), `payload` the whole body.

    Args:
        scheme: the source's signature scheme, which is also its body format.
        document: the body, already parsed as a JSON object.
        headers: the request headers, with lower-case names.
        received_at: when the gateway received the request (aware UTC).

    Raises:
        EventError: the id or type is missing, not a string, empty or too long; `created` is
            not Unix seconds; `data` is not an object.
    """
    if scheme == "stripe":
        event_id = _required(document.get("id"), "event id (body field 'id')")
        event_type = _required(document.get("type"), "event type (body field 'type')")
        occurred_at = _created(document.get("created"), received_at)
        payload = document.get("data", {})
        if not isinstance(payload, dict):
            raise EventError("body field 'data' must be a JSON object")
    else:
        event_id = _required(
            headers.get(GITHUB_DELIVERY_HEADER.lower()),
            f"event id ({GITHUB_DELIVERY_HEADER} header)",
        )
        base_type = _required(
            headers.get(GITHUB_EVENT_HEADER.lower()), f"event type ({GITHUB_EVENT_HEADER} header)"
        )
        action = document.get("action")
        event_type = f"{base_type}.{action}" if isinstance(action, str) and action else base_type
        event_type = _required(event_type, "event type")
        occurred_at = received_at
        payload = document
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": occurred_at.astimezone(UTC).isoformat(),
        "payload": payload,
    }


def _required(value: object, what: str) -> str:
    if value is None or value == "":
        raise EventError(f"missing {what}")
    if not isinstance(value, str):
        raise EventError(f"{what} must be a string")
    if len(value) > MAX_ID_CHARS:
        raise EventError(f"{what} is longer than {MAX_ID_CHARS} characters")
    return value


def _created(value: object, received_at: datetime) -> datetime:
    if value is None:
        return received_at
    # bool is an int in Python; `true` is not a time.
    if not isinstance(value, int) or isinstance(value, bool):
        raise EventError("body field 'created' must be Unix seconds (an integer)")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise EventError("body field 'created' is not a valid Unix time") from None
