"""Acknowledgement pages of the gateway: GET shows a confirmation, only POST acknowledges."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import TypeVar

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from moltbot.effects.escalation import (
    ACK_PATH,
    ACK_SECRET_NAME,
    AckTokenError,
    record_ack,
    verify_ack_token,
)
from moltbot.effects.executors import load_payload
from moltbot.masking import mask_text
from moltbot.state.escalations import Escalation, EscalationStatus, EscalationStore
from moltbot.state.keys import ledger_secret
from moltbot.state.ledger import Ledger

logger = logging.getLogger("moltbot.webhooks")
_T = TypeVar("_T")

ACK_PATH_PATTERN = re.compile(rf"{re.escape(ACK_PATH)}[^\s\"?]+")
"""An acknowledgement path in a log line (the token is a capability: logs show `/ack/…`)."""

_WORDS = {
    "en": {
        "lang": "en",
        "title": "Acknowledge alert",
        "ask": "Acknowledge this alert? Its escalation to the next channel stops.",
        "button": "Acknowledge",
        "done": "Acknowledged. The alert will not be escalated further.",
        "already": "This alert was acknowledged already.",
        "expired": "This acknowledgement link has expired. Use `moltbot outbox ack KEY`.",
        "invalid": "This acknowledgement link is not valid.",
        "unknown": "No alert awaits acknowledgement under this link.",
        "unavailable": "The ledger is unavailable; try again in a moment.",
        "alert": "Alert",
        "from": "From",
        "state": "Escalated so far",
    },
    "ko": {
        "lang": "ko",
        "title": "알림 확인",
        "ask": "이 알림을 확인하시겠습니까? 다음 채널로의 에스컬레이션이 멈춥니다.",
        "button": "확인",
        "done": "확인했습니다. 이 알림은 더 이상 에스컬레이션되지 않습니다.",
        "already": "이미 확인된 알림입니다.",
        "expired": "확인 링크가 만료되었습니다. `moltbot outbox ack KEY`를 사용하세요.",
        "invalid": "유효하지 않은 확인 링크입니다.",
        "unknown": "이 링크로 확인을 기다리는 알림이 없습니다.",
        "unavailable": "원장을 사용할 수 없습니다. 잠시 후 다시 시도하세요.",
        "alert": "알림",
        "from": "자동화",
        "state": "지금까지의 단계",
    },
}


@dataclass
class AckDesk:
    """What the acknowledgement pages need.

    Attributes:
        ledger: where escalations and the link secret live.
        locale: the pages' language.
        clock: the current time (aware UTC).
    """

    ledger: Ledger
    locale: str
    clock: Callable[[], datetime]

    def find(self, token: str) -> Escalation:
        """The escalation a genuine, unexpired token names.

        Raises:
            AckTokenError: malformed, forged or expired.
            LookupError: genuine, but no such escalation.
        """
        secret = ledger_secret(self.ledger, ACK_SECRET_NAME, now=self.clock())
        token_id = verify_ack_token(token, secret, self.clock())
        found = EscalationStore(self.ledger).by_token(token_id)
        if found is None:
            raise LookupError(token_id)
        return found

    def acknowledge(self, token: str) -> tuple[Escalation, bool]:
        """Acknowledge the escalation of `token` (see `find`); True when this call did."""
        escalation = self.find(token)
        changed = record_ack(self.ledger, escalation, by="link", now=self.clock())
        return escalation, changed


def add_ack_routes(app: FastAPI, desk: AckDesk) -> None:
    """`GET /ack/{token}`: the confirmation page (acknowledges nothing, so a mail scanner or a
    link preview fetching it changes nothing); `POST /ack/{token}`: acknowledges. A forged or
    malformed token is 403, an expired one 410, an unknown one 404; none says more than that."""
    words = _WORDS.get(desk.locale, _WORDS["en"])

    async def settle(action: Callable[[str], _T], token: str) -> _T | HTMLResponse:
        """`action(token)` off the event loop, or the page saying why it cannot be done."""
        try:
            return await run_in_threadpool(action, token)
        except AckTokenError as exc:
            return _refusal(words, exc)
        except LookupError:
            return _page(words, words["unknown"], status=404)
        except SQLAlchemyError as exc:
            logger.error("acknowledgement: ledger unavailable: %s", mask_text(str(exc)))
            return _page(words, words["unavailable"], status=503)

    @app.get(ACK_PATH + "{token}", response_class=HTMLResponse)
    async def confirm(token: str) -> HTMLResponse:
        escalation = await settle(desk.find, token)
        if isinstance(escalation, HTMLResponse):
            return escalation
        about = _about(words, escalation)
        if escalation.status == EscalationStatus.ACKNOWLEDGED:
            return _page(words, words["already"], about=about)
        # The form posts back to this same address: only that acknowledges.
        form = (
            f'<form method="post"><button type="submit">{escape(words["button"])}</button></form>'
        )
        return _page(words, words["ask"], about=about, extra=form)

    @app.post(ACK_PATH + "{token}", response_class=HTMLResponse)
    async def acknowledge(token: str) -> HTMLResponse:
        answer = await settle(desk.acknowledge, token)
        if isinstance(answer, HTMLResponse):
            return answer
        escalation, changed = answer
        if changed:
            logger.info("acknowledged by link: %s", escalation.key)
        text = words["done" if changed else "already"]
        return _page(words, text, about=_about(words, escalation))


def _refusal(words: dict[str, str], exc: AckTokenError) -> HTMLResponse:
    if "expired" in str(exc):
        return _page(words, words["expired"], status=410)
    return _page(words, words["invalid"], status=403)


def _about(words: dict[str, str], escalation: Escalation) -> str:
    """The alert's title (the people holding the link received it), its automation, its steps."""
    title = ""
    if escalation.payload is not None:
        title = load_payload("message", escalation.payload).title
    steps = " → ".join(str(step.get("link") or step.get("outcome")) for step in escalation.steps)
    rows = [(words["from"], escalation.automation), (words["state"], steps or "-")]
    if title:
        rows.insert(0, (words["alert"], mask_text(title)))
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _page(
    words: dict[str, str], text: str, *, status: int = 200, about: str = "", extra: str = ""
) -> HTMLResponse:
    body = (
        f'<!doctype html><html lang="{words["lang"]}"><head><meta charset="utf-8">'
        '<meta name="robots" content="noindex">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(words['title'])}</title></head><body>"
        f"<h1>{escape(words['title'])}</h1><p>{escape(text)}</p>{about}{extra}</body></html>"
    )
    # Never cached: a proxy must not answer a later GET from a page that showed a form.
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


class AckPathFilter(logging.Filter):
    """Shows acknowledgement paths in access log lines as `/ack/…`: the token is a capability."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                ACK_PATH_PATTERN.sub(f"{ACK_PATH}…", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True
