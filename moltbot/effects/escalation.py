"""Escalation of urgent messages: signed acknowledgement links, and each step up the route."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from html import escape

from moltbot.config.alerting import EscalationConfig
from moltbot.effects.executors import dump_payload, load_payload
from moltbot.effects.model import Intent, Route
from moltbot.masking import mask_text
from moltbot.messages import Message
from moltbot.state.audit import AuditAction, AuditTrail
from moltbot.state.escalations import Escalation, EscalationStore
from moltbot.state.keys import ledger_secret
from moltbot.state.ledger import Ledger

logger = logging.getLogger("moltbot.effects")

ACK_SECRET_NAME = "ack-links"
"""The ledger secret (`moltbot.state.keys`) that signs acknowledgement links."""
ACK_PATH = "/ack/"

_LINK_WORDS = {
    "en": ("Acknowledge", "Acknowledge this alert (stops its escalation)"),
    "ko": ("확인", "이 알림 확인 (에스컬레이션 중지)"),
}
_ESCALATED_WORDS = {
    "en": ("[Escalated]", "Not acknowledged for {minutes} min: escalated to {link} (step {step})."),
    "ko": ("[에스컬레이션]", "{minutes}분 동안 확인되지 않아 {link}(으)로 올립니다 ({step}단계)."),
}


class AckTokenError(ValueError):
    """An acknowledgement token that is malformed, forged or expired (the reason, never the
    token)."""


def sign_ack_token(token_id: str, expires_at: datetime, secret: bytes) -> str:
    """`<token_id>.<expiry unix time>.<HMAC-SHA256 of both, base64url>`."""
    body = f"{token_id}.{int(expires_at.timestamp())}"
    return f"{body}.{_signature(body, secret)}"


def verify_ack_token(token: str, secret: bytes, now: datetime) -> str:
    """The token id of a genuine, unexpired token.

    Raises:
        AckTokenError: malformed, a wrong signature, or expired.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
        raise AckTokenError("malformed acknowledgement link")
    token_id, expiry, signature = parts
    if not hmac.compare_digest(_signature(f"{token_id}.{expiry}", secret), signature):
        raise AckTokenError("acknowledgement link not valid (wrong signature)")
    if now.timestamp() >= int(expiry):
        raise AckTokenError("acknowledgement link expired")
    return token_id


def _signature(body: str, secret: bytes) -> str:
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def ack_url(public_url: str, token: str) -> str:
    """The acknowledgement page of `token` on the gateway at `public_url`."""
    return f"{public_url.rstrip('/')}{ACK_PATH}{token}"


def with_ack_link(message: Message, url: str, *, locale: str) -> Message:
    """`message` carrying its acknowledgement link in every rendering (chat, e-mail, file, SMS)."""
    short, long = _LINK_WORDS.get(locale, _LINK_WORDS["en"])
    blocks = message.slack_blocks
    if blocks is not None:
        link_block = {"type": "section", "text": {"type": "mrkdwn", "text": f"<{url}|{long}>"}}
        blocks = [*blocks, link_block]
    html = message.html
    if html is not None:
        paragraph = f'<p><a href="{escape(url)}">{escape(long)}</a></p>'
        html = (
            html.replace("</body>", f"{paragraph}</body>", 1)
            if "</body>" in html
            else html + paragraph
        )
    return message.model_copy(
        update={
            "text": f"{message.text}\n\n{short}: {url}",
            "markdown": f"{message.markdown}\n[{long}]({url})\n" if message.markdown else None,
            "html": html,
            "slack_blocks": blocks,
            "ack_url": url,
        }
    )


def escalated_message(
    message: Message, *, minutes: int, link: str, step: int, locale: str
) -> Message:
    """The message of escalation step `step` (1, 2 …) to `link`: marked, saying why."""
    mark, why = _ESCALATED_WORDS.get(locale, _ESCALATED_WORDS["en"])
    reason = why.format(minutes=minutes, link=link, step=step)
    blocks = message.slack_blocks
    if blocks is not None:
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": reason}}, *blocks]
    return message.model_copy(
        update={
            "title": f"{mark} {message.title}",
            "text": f"{reason}\n\n{message.text}",
            "markdown": f"{reason}\n\n{message.markdown}" if message.markdown else None,
            "html": f"<p>{escape(reason)}</p>{message.html}" if message.html else None,
            "slack_blocks": blocks,
            "ack_url": None,
            "follow_up_of": None,
            "resolves": False,
        }
    )


@dataclass
class EscalationWatch:
    """Opens an escalation for each urgent message the effects layer delivers: the message
    carries its acknowledgement link, and its first delivery arms the first step.

    Attributes:
        ledger: where escalations and the link secret live.
        config: the `[escalation]` table.
        locale: the language of the link's words.
        clock: the current time (aware UTC).
    """

    ledger: Ledger
    config: EscalationConfig
    locale: str
    clock: Callable[[], datetime]

    def __post_init__(self) -> None:
        self.store = EscalationStore(self.ledger)

    def applies_to(self, intent: Intent) -> bool:
        """An urgent message on a route that escalates."""
        return (
            intent.kind == "message"
            and isinstance(intent.payload, Message)
            and intent.payload.severity in self.config.severities
            and self.config.after_for(intent.route.name) is not None
        )

    def prepare(self, intent: Intent) -> Intent:
        """The intent whose message carries its acknowledgement link (the escalation is opened
        on first call; retries and re-runs get the same link)."""
        if not self.applies_to(intent):
            return intent
        now = self.clock()
        escalation = self.store.open(
            intent.key,
            automation=intent.automation,
            route=intent.route.links,
            payload=dump_payload("message", intent.payload),
            expires_at=now + timedelta(hours=self.config.link_ttl_hours),
            now=now,
        )
        url = self.link_of(escalation)
        return replace(intent, payload=with_ack_link(intent.payload, url, locale=self.locale))

    def link_of(self, escalation: Escalation) -> str:
        """The escalation's acknowledgement link."""
        secret = ledger_secret(self.ledger, ACK_SECRET_NAME, now=self.clock())
        token = sign_ack_token(escalation.token_id, escalation.expires_at, secret)
        return ack_url(self.config.public_url, token)

    def delivered(self, intent: Intent, link: str) -> None:
        """The message's first delivery, on `link`: the next link is due in N minutes."""
        self._first_step(intent, link)

    def undelivered(self, intent: Intent) -> None:
        """Every link failed (a dead letter, announced): nothing is left to escalate to."""
        self._first_step(intent, None)

    def _first_step(self, intent: Intent, link: str | None) -> None:
        if not self.applies_to(intent):
            return
        now = self.clock()
        index = intent.route.links.index(link) if link is not None else None
        after = self.config.after_for(intent.route.name) or self.config.after_minutes
        more = index is not None and index < len(intent.route.links) - 1
        self.store.record_step(
            intent.key,
            from_step=-1,
            step=index,
            link=link,
            outcome="done" if link is not None else "dead",
            next_at=now + timedelta(minutes=after) if more else None,
            now=now,
        )


@dataclass(frozen=True)
class EscalationStep:
    """The step due for one escalation: its intent along the rest of the route.

    Attributes:
        escalation: the row it advances.
        intent: the escalated message on the links after the last one that took it.
        number: the step's number (1: the first escalation).
    """

    escalation: Escalation
    intent: Intent
    number: int


def plan_steps(
    due: list[Escalation],
    config: EscalationConfig,
    *,
    locale: str,
    ack_links: Mapping[str, str],
) -> list[EscalationStep]:
    """The next step of each due escalation: the message, marked escalated, with its link, on
    the links after the one that took it last (a failing link falls back to the next).

    Each step's key is the first delivery's key and the step's number, so a re-run after a crash
    performs the same step at most once.
    """
    steps = []
    for escalation in due:
        rest = escalation.route[escalation.step + 1 :]
        if not rest or escalation.payload is None:
            continue
        number = len([s for s in escalation.steps if s.get("step") is not None])
        minutes = config.after_for(escalation.route[0]) or config.after_minutes
        message = escalated_message(
            load_payload("message", escalation.payload),
            minutes=minutes,
            link=rest[0],
            step=number,
            locale=locale,
        )
        message = with_ack_link(message, ack_links[escalation.key], locale=locale)
        intent = Intent(
            key=f"{escalation.key}:escalation:{number}",
            automation=escalation.automation,
            kind="message",
            target=" > ".join(rest),
            payload=message,
            route=Route(tuple(rest)),
            label=f"escalation {number}: {message.title}",
        )
        steps.append(EscalationStep(escalation, intent, number))
    return steps


@dataclass(frozen=True)
class StepRecord:
    """What one performed step leaves in its escalation: the link that took it (None when the
    step died), and when the next step is due (None: the route has ended)."""

    step: int | None
    link: str | None
    outcome: str
    next_at: datetime | None


def record_of_step(
    escalation: Escalation, outcome_status: str, via: str | None, *, after: int, now: datetime
) -> StepRecord | None:
    """Where a performed step went: delivered on a link of the route (the next step due `after`
    minutes later while links are left), dead (the escalation ends), or neither (None: not
    settled, the next run tries the same step again)."""
    route = escalation.route
    if outcome_status in ("done", "already_done") and via in route:
        index = route.index(via)
        next_at = now + timedelta(minutes=after) if index < len(route) - 1 else None
        return StepRecord(index, via, outcome_status, next_at)
    if outcome_status == "dead":
        return StepRecord(None, None, "dead", None)
    return None


def record_ack(ledger: Ledger, escalation: Escalation, *, by: str, now: datetime) -> bool:
    """Acknowledge `escalation` and put it in the audit trail.

    Returns:
        True when this call acknowledged it (False: it already was).
    """
    _, changed = EscalationStore(ledger).acknowledge(escalation.key, by=by, now=now)
    if changed:
        try:
            AuditTrail(ledger).record(
                AuditAction.ACKNOWLEDGE,
                escalation.key,
                actor=by,
                automation=escalation.automation,
                at=now,
            )
        except Exception as exc:  # the acknowledgement stands; the trail's failure is logged
            logger.error("audit of an acknowledgement failed: %s", mask_text(str(exc)))
    return changed
