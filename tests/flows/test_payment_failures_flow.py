"""The payment-failures flow end to end: signed Stripe webhooks through the real gateway app into
the inbox, runs on the real Prefect API, alerts on the Slack emulator, tickets in the Jira one."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from blocks import SlackIncomingWebhook
from flows.payment_failures.flow import payment_failures
from moltbot.blockdocs import save_block_document
from moltbot.config.settings import get_settings
from moltbot.errors import DeliveryFailed
from moltbot.sandbox import Sandbox
from moltbot.state.inbox import Inbox, InboxStatus
from moltbot.state.ledger import Ledger
from moltbot.state.payments import payments_table
from moltbot.state.watermarks import WatermarkStore
from moltbot.webhooks.app import SourceVerifier, create_gateway_app
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.signatures import sign_stripe

pytestmark = pytest.mark.slow

SHIPPED_CONFIG = Path(__file__).parents[2] / "moltbot.toml"
SECRET = "whsec_payment_failures_test_5d1"
JIRA = "sandbox-jira"
ROUTES = {"alert": ["pf-payments"], "summary": ["pf-payments"]}
EMAIL = "minji.kim@example.com"
# 2026-11-24 10:00 in Seoul.
T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def seoul(hhmmss: str, day: int = 24) -> datetime:
    """A moment given as Seoul wall-clock time on 2026-11-<day>."""
    return datetime.fromisoformat(f"2026-11-{day}T{hhmmss}+09:00").astimezone(UTC)


class Gateway:
    """The real gateway app on the test's ledger, posted to in process (ASGI)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.clock = T0.timestamp()
        self.app = create_gateway_app(
            GatewayConfig.from_table(None),
            inbox,
            {"stripe": SourceVerifier(scheme="stripe", secret=SecretStr(SECRET))},
            clock=lambda: self.clock,
        )

    def post(self, document: dict[str, Any]) -> httpx.Response:
        body = json.dumps(document, ensure_ascii=False).encode()
        headers = {
            "Stripe-Signature": sign_stripe(body, SECRET, int(self.clock)),
            "Content-Type": "application/json",
        }

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
                return await c.post("/hooks/stripe", content=body, headers=headers)

        return asyncio.run(go())

    def accept(self, *documents: dict[str, Any]) -> list[str]:
        """Post each event; their inbox ids (every one accepted)."""
        ids = []
        for document in documents:
            answer = self.post(document)
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        return ids


@pytest.fixture
def gateway(moltbot_home: Path) -> Iterator[Gateway]:
    with Ledger.from_settings() as ledger:
        yield Gateway(Inbox(ledger))


@pytest.fixture
def setup(tmp_path: Path, sandbox: Sandbox, sandbox_blocks: list[str]) -> Sandbox:
    """The shipped moltbot.toml (its ticket mappings) and a Slack channel for the alerts."""
    shutil.copy(SHIPPED_CONFIG, tmp_path / "moltbot.toml")
    save_block_document(
        SlackIncomingWebhook(url=sandbox.slack_webhook_url("payments")), "pf-payments"
    )
    return sandbox


def intent_failed(n: int, at: datetime, *, customer: str = "cus_MinjiKim0042",
                  email: str | None = EMAIL, amount: int = 45000, currency: str = "krw",
                  decline: str = "insufficient_funds") -> dict[str, Any]:  # fmt: skip
    """A `payment_intent.payment_failed` event as Stripe sends it (the fields we read)."""
    return {
        "id": f"evt_pi_failed_{n}",
        "object": "event",
        "type": "payment_intent.payment_failed",
        "created": int(at.timestamp()),
        "data": {
            "object": {
                "id": f"pi_{n}",
                "object": "payment_intent",
                "amount": amount,
                "currency": currency,
                "customer": customer,
                "receipt_email": email,
                "latest_charge": f"ch_{n}",
                "last_payment_error": {
                    "charge": f"ch_{n}",
                    "code": "card_declined",
                    "decline_code": decline,
                    "message": "Your card has insufficient funds.",
                    "type": "card_error",
                },
                "status": "requires_payment_method",
            }
        },
    }


def charge(n: int, at: datetime, *, failed: bool, customer: str = "cus_Other0001",
           amount: int = 45000, currency: str = "krw") -> dict[str, Any]:  # fmt: skip
    """A `charge.failed` or `charge.succeeded` event."""
    return {
        "id": f"evt_ch_{'failed' if failed else 'ok'}_{n}",
        "object": "event",
        "type": "charge.failed" if failed else "charge.succeeded",
        "created": int(at.timestamp()),
        "data": {
            "object": {
                "id": f"ch_{n}",
                "object": "charge",
                "amount": amount,
                "currency": currency,
                "customer": customer,
                "payment_intent": f"pi_{n}",
                "failure_code": "card_declined" if failed else None,
                "failure_message": "Your card was declined." if failed else None,
                "billing_details": {"email": "other.person@example.com", "name": None},
                "status": "failed" if failed else "succeeded",
            }
        },
    }


def generic_failed(n: int, at: datetime) -> dict[str, Any]:
    """The generic `payment.failed` shape (a Korean PG through the same signed source)."""
    return {
        "id": f"evt_toss_{n}",
        "type": "payment.failed",
        "created": int(at.timestamp()),
        "data": {
            "order_id": f"A-{n:05d}",
            "amount": 129000,
            "currency": "KRW",
            "provider": "toss",
            "error_code": "CARD_LIMIT_EXCEEDED",
            "customer_email": "sujin.park@example.com",
        },
    }


def run(**params: Any) -> dict[str, Any]:
    params.setdefault("channels_by_severity", ROUTES)
    params.setdefault("jira_block", JIRA)
    return payment_failures(**params)


def posts(sandbox: Sandbox) -> list[str]:
    return [
        "\n".join(
            block["text"]["text"]
            for block in post.payload["blocks"]
            if block["type"] in ("header", "section")
        )
        for post in sandbox.state.slack.messages_for(sandbox.slack_webhook_url("payments"))
    ]


def stored_events() -> int:
    with Ledger.from_settings() as ledger, ledger.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(payments_table)).scalar()


def artifact_texts(*results: dict[str, Any]) -> str:
    """The data of every artifact the given runs published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    ids = [artifact["id"] for result in results for artifact in result["artifacts"]]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=ids))
        )
    assert len(artifacts) == len(ids)
    texts = []
    for artifact in artifacts:
        data = artifact.data
        if isinstance(data, str) and data.startswith(("[", "{")):
            data = json.loads(data)  # a table's rows, stored as JSON text
        texts.append(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False))
    return "\n".join(texts)


def outbox_texts() -> str:
    folder = get_settings().outbox_dir
    if not folder.exists():
        return ""
    return "\n".join(p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file())


def test_three_failures_of_one_customer_open_one_jira_issue_and_a_fourth_does_not(
    setup: Sandbox, gateway: Gateway
) -> None:
    jira = setup.state.jira
    first, second, third, fourth = (
        gateway.accept(intent_failed(n, seoul(f"10:0{n}:00")))[0] for n in range(1, 5)
    )

    after_two = [run(inbox_ids=[first]), run(inbox_ids=[second])]
    assert jira.issues("OPS") == []
    assert [r["tickets"] for r in after_two] == [[], []]

    third_run = run(inbox_ids=[third])
    runs = [*after_two, third_run]
    [issue] = jira.issues("OPS")
    [ticket] = third_run["tickets"]
    assert (ticket["status"], ticket["issue"], ticket["failures"]) == ("created", issue.key, 3)
    assert ticket["dedup_key"].startswith("payment-failures:") and ticket["dedup_key"].endswith(
        ":2026-11-24"
    )
    assert issue.summary.startswith("반복 결제 실패: 고객 ***@example.com #")
    assert "24시간 내 3회" in issue.summary
    assert "135,000원" in (issue.description or "") or "₩135,000" in (issue.description or "")

    # The same event again (a redelivered run), then a fourth failure the same day.
    again = run(inbox_ids=[third])
    fourth_run = run(inbox_ids=[fourth])

    assert len(jira.issues("OPS")) == 1
    assert (again["recorded"], again["duplicates"], again["tickets"]) == (0, 1, [])
    assert fourth_run["tickets"] == []
    # A scheduled run looks for tickets a failed run left unopened: none.
    scheduled = run(now=seoul("10:06:00"))
    assert scheduled["tickets"] == []
    assert len(jira.issues("OPS")) == 1
    # Customer details never leave the inbox unmasked.
    texts = artifact_texts(*runs, again, fourth_run, scheduled)
    shown = [issue.summary, issue.description or "", *posts(setup), texts, outbox_texts()]
    assert all("minji" not in text.lower() for text in shown)


def test_a_window_is_alerted_once_and_the_day_summary_gives_rates(
    setup: Sandbox, gateway: Gateway
) -> None:
    ids = gateway.accept(
        intent_failed(1, seoul("10:00:30")),
        charge(1, seoul("10:00:31"), failed=True, customer="cus_MinjiKim0042"),  # same attempt
        intent_failed(2, seoul("10:03:00"), amount=30000, decline="expired_card"),
        intent_failed(3, seoul("10:04:00"), customer="cus_Tom", email=None, amount=1999,
                      currency="usd"),
        generic_failed(4, seoul("10:02:00")),
        *(charge(10 + n, seoul(f"10:0{n}:10"), failed=False) for n in range(5)),
    )  # fmt: skip
    duplicate = gateway.post(intent_failed(1, seoul("10:00:30")))
    assert duplicate.status_code == 200 and duplicate.json()["status"] == "duplicate"

    recorded = run(inbox_ids=ids, now=seoul("10:04:20"))
    assert (recorded["recorded"], recorded["duplicates"], recorded["deliveries"]) == (10, 0, [])

    first = run(now=seoul("10:05:05"))
    assert "payment-failures-batches" in [a["key"] for a in first["artifacts"]]
    second = run(now=seoul("10:05:40"))
    same_moment = run(now=seoul("10:05:05"))

    [alert] = first["alerts"]
    # 4 distinct failures: the intent and its charge are one attempt.
    assert alert["failures"] == 4
    assert alert["amounts"] == {"KRW": 45000 + 30000 + 129000, "USD": 1999}
    assert alert["reasons"] == {
        "card_limit_exceeded": 1, "expired_card": 1, "insufficient_funds": 2
    }  # fmt: skip
    assert alert["providers"] == {"stripe": 3, "toss": 1}
    assert [(d["severity"], d["channel"], d["status"]) for d in first["deliveries"]] == [
        ("alert", "pf-payments", "done")
    ]
    assert second["alerts"] == [] and same_moment["alerts"] == []
    [post] = posts(setup)
    assert "Payment failures: 4 between 10:00 and 10:05" in post
    assert "₩204,000 · $19.99" in post

    # A failure of 10:01 that reaches moltbot at 10:07 is alerted with the 10:05 window.
    [late] = gateway.accept(intent_failed(5, seoul("10:01:00"), customer="cus_Late"))
    run(inbox_ids=[late], now=seoul("10:07:00"))
    [late_alert] = run(now=seoul("10:10:01"))["alerts"]
    assert (late_alert["failures"], late_alert["late"]) == (1, 1)
    assert late_alert["start"] == seoul("10:05:00").isoformat()

    # After midnight in Seoul: the 24th's summary, once.
    summary_run = run(now=seoul("00:00:30", day=25))
    assert run(now=seoul("00:05:00", day=25))["summaries"] == []
    [summary] = summary_run["summaries"]
    # 5 failures (one announced twice), 5 successes: 10 attempts.
    assert (summary["failures"], summary["successes"], summary["rate"]) == (5, 5, 0.5)
    assert [(r["name"], r["failures"], r["rate"]) for r in summary["by_reason"]] == [
        ("insufficient_funds", 3, 0.3),
        ("card_limit_exceeded", 1, 0.1),
        ("expired_card", 1, 0.1),
    ]
    # stripe: 4 failed of 9 attempts; toss: 1 of 1.
    assert [(r["name"], r["failures"], r["attempts"]) for r in summary["by_provider"]] == [
        ("stripe", 4, 9),
        ("toss", 1, 1),
    ]
    assert summary["by_provider"][0]["rate"] == pytest.approx(4 / 9)
    assert len(posts(setup)) == 3
    assert "Payment failures on Tue 24 Nov 2026: 5 of 10 attempts (50.0%)" in posts(setup)[2]
    texts = artifact_texts(recorded, first, summary_run)
    shown = "\n".join([*posts(setup), texts, json.dumps(summary_run), outbox_texts()])
    assert "minji" not in shown.lower() and "sujin" not in shown.lower()
    assert "***@example.com" in shown


def test_a_malformed_event_is_one_line_and_the_others_are_recorded(
    setup: Sandbox, gateway: Gateway
) -> None:
    broken = charge(2, seoul("10:01:00"), failed=True)
    broken["data"]["object"]["amount"] = "45000원"
    good, bad = gateway.accept(intent_failed(1, seoul("10:00:00")), broken)

    with pytest.raises(DeliveryFailed) as failed:
        run(inbox_ids=[good, bad], now=seoul("10:02:00"))

    assert str(failed.value) == (
        f"1 failure(s): inbox entry {bad} (charge.failed): 'payload.object.amount' must be a "
        "whole number of the minor unit, 0 or more"
    )
    assert failed.value.result["recorded"] == 1
    assert stored_events() == 1
    assert gateway.inbox.get(bad).status == InboxStatus.FAILED
    assert gateway.inbox.get(good).status == InboxStatus.PENDING
    assert "45000원" not in (gateway.inbox.get(bad).error or "")


def test_a_malformed_event_alone_changes_nothing_but_its_inbox_entry(
    setup: Sandbox, gateway: Gateway
) -> None:
    [bad] = gateway.accept({"id": "evt_x", "type": "payment.failed", "data": {"amount": "많이"}})

    with pytest.raises(DeliveryFailed, match=r"'payload\.amount' must be a number"):
        run(inbox_ids=[bad])

    assert stored_events() == 0
    with Ledger.from_settings() as ledger:
        assert ledger.effects() == []
    assert gateway.inbox.get(bad).status == InboxStatus.FAILED


def test_a_dry_run_previews_the_alert_and_sends_and_saves_nothing(
    setup: Sandbox, gateway: Gateway
) -> None:
    ids = gateway.accept(intent_failed(1, seoul("10:00:00")), intent_failed(2, seoul("10:01:00")))
    run(inbox_ids=ids, now=seoul("10:02:00"))

    preview = run(now=seoul("10:05:01"), dry_run=True)

    assert [a["failures"] for a in preview["alerts"]] == [2]
    assert [d["status"] for d in preview["deliveries"]] == ["dry_run"]
    assert posts(setup) == []
    with Ledger.from_settings() as ledger:
        assert WatermarkStore(ledger, "payment-failures").get("alerts").position is None
    # The real run afterwards sends it.
    assert [d["status"] for d in run(now=seoul("10:05:01"))["deliveries"]] == ["done"]


def test_korean_locale_alert_and_summary(
    setup: Sandbox, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    ids = gateway.accept(
        intent_failed(1, seoul("10:00:00")),
        intent_failed(2, seoul("10:01:00"), amount=30000),
        charge(3, seoul("10:02:00"), failed=False),
    )
    run(inbox_ids=ids, now=seoul("10:03:00"))

    alerted = run(now=seoul("10:05:00"))
    summarized = run(now=seoul("00:01:00", day=25))

    alert, summary = posts(setup)
    assert "결제 실패: 10:00~10:05 사이 2건" in alert
    assert "75,000원" in alert and "insufficient_funds" in alert
    assert "2026년 11월 24일 (화) 결제 실패: 2건 / 시도 3건 (66.7%)" in summary
    assert "minji" not in alert + summary
    texts = artifact_texts(alerted, summarized)
    assert "구간" in texts and "결제사" in texts and "확인 시각" in texts
    assert "Window" not in texts and "Checked" not in texts
    outbox = outbox_texts()
    assert "minji" not in outbox


def test_a_ticket_due_without_a_jira_block_is_reported_and_opened_by_the_next_check(
    setup: Sandbox, gateway: Gateway
) -> None:
    ids = gateway.accept(*(intent_failed(n, seoul(f"10:0{n}:00")) for n in range(1, 4)))

    with pytest.raises(DeliveryFailed, match="no jira_block given"):
        run(inbox_ids=ids, jira_block=None, now=seoul("10:04:00"))
    assert setup.state.jira.issues("OPS") == []

    caught_up = run(now=seoul("10:06:00"))

    assert [t["status"] for t in caught_up["tickets"]] == ["created"]
    assert len(setup.state.jira.issues("OPS")) == 1
    assert stored_events() == 3
    assert timedelta(0) < seoul("10:06:00") - seoul("10:03:00")
