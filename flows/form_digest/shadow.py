"""form-digest in shadow mode: the sheet window a real run digested, and its replay.

The snapshot keeps the window (its rows with their sheet row numbers, parsed times and
watermark position), the form's layout as the run typed it from the whole sheet (the sheet
itself is not copied), and the Notion page link the digest carried. The replay digests and
renders the window again with the current code; the Notion page itself is not compared.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd

from flows.form_digest.digest import FormLayout
from flows.form_digest.render import AUTOMATION, build_digest_message, digest_context, window_key
from flows.shared.forms import ResponseWindow
from moltbot.messages import Message
from moltbot.shadow import ShadowEffect, message_effect
from moltbot.state.recorded_inputs import RecordedRun

KIND = "sheet_window"


def _moment(value: datetime | None) -> str | None:
    return None if value is None else pd.Timestamp(value).isoformat()


def snapshot(
    window: ResponseWindow,
    layout: FormLayout,
    *,
    form: str,
    stream: str,
    max_text_answers: int,
    notion_url: str | None,
    now: datetime,
    timezone: str,
    locale: str,
) -> dict[str, Any]:
    """What `replay` needs: the window, the layout, and the run's moment and settings."""
    rows = json.loads(window.rows.to_json(orient="split", date_format="iso", date_unit="us"))
    return {
        "rows": rows,
        "times": [None if pd.isna(t) else pd.Timestamp(t).isoformat() for t in window.times],
        "position": window.position,
        "start": _moment(window.start),
        "end": _moment(window.end),
        "fingerprint": window.fingerprint,
        "resumed": window.resumed,
        "realigned": window.realigned,
        "layout": {
            "timestamp_column": layout.timestamp_column,
            "questions": layout.questions,
            "required": list(layout.required),
            "nps_column": layout.nps_column,
        },
        "form": form,
        "stream": stream,
        "max_text_answers": max_text_answers,
        "notion_url": notion_url,
        "now": now.isoformat(),
        "timezone": timezone,
        "locale": locale,
    }


def effects(message: Message) -> list[ShadowEffect]:
    """The digest message (it goes to the run's `info` routes)."""
    return [message_effect(message, "info")]


def _window(payload: dict[str, Any]) -> ResponseWindow:
    rows = pd.DataFrame(**payload["rows"])
    times = pd.to_datetime(
        pd.Series(payload["times"], index=rows.index, dtype=object), utc=True, format="ISO8601"
    )
    start, end = (
        None if payload[name] is None else pd.Timestamp(payload[name]).to_pydatetime()
        for name in ("start", "end")
    )
    return ResponseWindow(
        rows=rows,
        times=times,
        position=payload["position"],
        start=start,
        end=end,
        fingerprint=payload["fingerprint"],
        resumed=payload["resumed"],
        realigned=payload["realigned"],
    )


def replay(run: RecordedRun) -> list[ShadowEffect]:
    """The digest the current code renders from a recorded window (nothing sent)."""
    from flows.form_digest.flow import compute_digest

    payload = run.payload
    window = _window(payload)
    recorded = payload["layout"]
    layout = FormLayout(
        timestamp_column=recorded["timestamp_column"],
        questions=recorded["questions"],
        required=tuple(recorded["required"]),
        nps_column=recorded["nps_column"],
    )
    digest = compute_digest.fn(window, layout, max_text_answers=payload["max_text_answers"])
    context = digest_context(
        digest,
        window,
        form=payload["form"],
        timezone=payload["timezone"],
        now=datetime.fromisoformat(payload["now"]),
    )
    message = build_digest_message(
        context,
        key=window_key(payload["stream"], window),
        locale=payload["locale"],
        notion_url=payload["notion_url"],
    )
    return effects(message)


__all__ = ["AUTOMATION", "KIND", "effects", "replay", "snapshot"]
