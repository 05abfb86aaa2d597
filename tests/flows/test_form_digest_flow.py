"""The form-digest flow end to end: Sheets and Notion emulators, Slack, SMTP, ledger, watermark."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from blocks import SlackIncomingWebhook
from demo.sample_forms import (
    MALFORMED_TIMESTAMP_ROW,
    MISSING_EMAIL_ROW,
    NPS_COLUMN,
    PERSONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SAMPLE_FORM_NAME,
    SAMPLE_FORM_WORKSHEET,
    forms_timestamp,
    sample_form_rows,
    sample_form_sheet,
)
from flows.form_digest.flow import form_digest
from moltbot.blockdocs import save_block_document
from moltbot.cli import app
from moltbot.errors import DeliveryFailed, InputError
from moltbot.retrying import recorded_sleeps
from moltbot.sandbox.notion import SANDBOX_DIGEST_DATA_SOURCE_ID, SANDBOX_DIGEST_DATABASE_ID
from moltbot.state.ledger import EffectStatus, Ledger
from moltbot.state.watermarks import Watermark, WatermarkStore
from tasks.notion import block_fingerprint
from tests.ledger_checks import assert_only_the_failed_run_is_audited

pytestmark = pytest.mark.slow

TAB = SAMPLE_FORM_WORKSHEET
PAGES = r"^/v1/pages$"
CHANNELS = ["digest-slack", "sandbox-email", "outbox"]
WEBHOOK = "digest"
HEADER_COMMENT = -1  # the free-text question 의견 is the sheet's last column


@pytest.fixture
def channels(sandbox, sandbox_blocks) -> list[str]:
    """`digest-slack` (a webhook of its own), `sandbox-email` (the SMTP sink) and the outbox.

    Not the shared `sandbox-slack` block: other tests rely on it pointing at the fixed webhook.
    """
    save_block_document(
        SlackIncomingWebhook(url=sandbox.slack_webhook_url(WEBHOOK)), "digest-slack"
    )
    return CHANNELS


def seed(sandbox, rows: list[list[Any]]) -> str:
    return sandbox.state.sheets.create_spreadsheet(SAMPLE_FORM_NAME, {TAB: rows})


def run(spreadsheet_id: str, **params: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "sheets_block": "sandbox-sheets",
        "spreadsheet_id": spreadsheet_id,
        "worksheet": TAB,
        "form_name": SAMPLE_FORM_NAME,
        "channels": CHANNELS,
        "notion_block": "sandbox-notion",
        "notion_database_id": SANDBOX_DIGEST_DATABASE_ID,
        "required_columns": list(REQUIRED_COLUMNS),
        "nps_column": NPS_COLUMN,
        "skip_columns": list(PERSONAL_COLUMNS),
    }
    values.update(params)
    return form_digest(**values)


def slack_posts(sandbox) -> list[dict[str, Any]]:
    return [
        post.payload
        for post in sandbox.state.slack.messages_for(sandbox.slack_webhook_url(WEBHOOK))
    ]


def pages(sandbox) -> list[dict[str, Any]]:
    return sandbox.state.notion.pages(SANDBOX_DIGEST_DATA_SOURCE_ID)


def page_title(page: dict[str, Any]) -> str:
    return "".join(item["plain_text"] for item in page["properties"]["Name"]["title"])


def watermark(spreadsheet_id: str) -> Watermark:
    with Ledger.from_settings() as ledger:
        return WatermarkStore(ledger, "form-digest").get(f"{spreadsheet_id}/{TAB}")


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {outcome["channel"]: outcome["status"] for outcome in result["deliveries"]}


def test_korean_form_gives_one_page_one_post_one_mail_and_an_outbox_file(
    channels, sandbox, moltbot_home
):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))

    result = run(spreadsheet_id)

    assert result["form"] == SAMPLE_FORM_NAME
    assert (result["window"]["first_row"], result["window"]["last_row"]) == (2, 25)
    assert result["window"]["start"].startswith("2026-11-20T12:55:23+09:00")
    assert result["rows"] == 24 and result["responses"] == 22
    assert {name: q["kind"] for name, q in result["questions"].items()} == {
        "참여 방식": "choice",
        "관심 분야": "checkbox",
        "만족도": "numeric",
        "추천 의향": "nps",
        "의견": "text",
    }
    interests = result["questions"]["관심 분야"]
    assert {o["value"] for o in interests["options"]} == {
        "AI",
        "데이터 분석",
        "업무 자동화",
        "보안",
    }
    assert sum(o["count"] for o in interests["options"]) > interests["answers"] == 22
    assert statuses(result) == dict.fromkeys(CHANNELS, "done")
    assert result["watermark"] == {"status": "advanced", "row": 25}
    # Notion: one page, titled with the window's local dates, its properties and figures.
    [page] = pages(sandbox)
    assert page_title(page) == f"{SAMPLE_FORM_NAME} digest 2026-11-20..2026-11-22"
    assert page["properties"]["Responses"]["number"] == 22
    assert page["properties"]["Date"]["date"]["start"] == "2026-11-20"
    assert page["properties"]["Form"]["select"]["name"] == SAMPLE_FORM_NAME
    assert result["notion_page_id"] == page["id"] and result["notion_url"] == page["url"]
    body = sandbox.state.notion.children(page["id"])
    kinds = [block["type"] for block in body]
    assert "table" in kinds and kinds.count("heading_2") == 7  # overview, 5 questions, attention
    texts = [block_fingerprint(block)[1] for block in body]
    assert "관심 분야" in texts and "row 11: unreadable timestamp" in " ".join(texts)
    # Chat links the page; the mail and the outbox file carry the whole digest.
    [post] = slack_posts(sandbox)
    assert post["blocks"][0]["text"]["text"] == page_title(page)
    assert f"<{page['url']}|Open the digest in Notion>" in post["blocks"][1]["text"]["text"]
    assert "• *관심 분야*: 데이터 분석 63.6% · AI 59.1%" in post["blocks"][2]["text"]["text"]
    assert "2 rows need attention: rows 11, 17" in post["blocks"][-1]["elements"][0]["text"]
    [mail] = sandbox.smtp.messages
    assert mail.subject == page_title(page)
    [outbox_file] = (moltbot_home / "outbox").glob("form-digest-*.md")
    digest_md = outbox_file.read_text(encoding="utf-8")
    assert "| 관심 분야 | checkboxes | 22 |" in digest_md
    assert "자료 받을 연락처: 010-2345-6789" in digest_md  # the business's own outbox keeps it


CANARY_PHONE = "010-9876-5432"
CANARY_SENTENCE = "카나리아 문장: 이 의견은 슬랙에 나가면 안 됩니다"


def slack_texts(post: dict[str, Any]) -> list[str]:
    """Every string a Slack post carries: its `text` and each string anywhere in its blocks."""

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [text for item in value.values() for text in strings(item)]
        if isinstance(value, list):
            return [text for item in value for text in strings(item)]
        return []

    return [post.get("text", ""), *strings(post.get("blocks", []))]


def test_free_text_answers_reach_mail_and_notion_but_never_slack(channels, sandbox):
    rows = sample_form_sheet(1)
    rows[1][HEADER_COMMENT] = f"{CANARY_SENTENCE}. 연락처 {CANARY_PHONE}"
    spreadsheet_id = seed(sandbox, rows)

    result = run(spreadsheet_id, max_text_answers=100)

    assert statuses(result) == dict.fromkeys(CHANNELS, "done")
    # Slack: neither the post's notification text nor any block carries the answer.
    [post] = slack_posts(sandbox)
    assert post["text"].startswith(f"{SAMPLE_FORM_NAME} digest 2026-11-20..2026-11-22\n")
    for text in slack_texts(post):
        assert CANARY_PHONE not in text and "카나리아" not in text
        assert "010-2345-6789" not in text  # the sample's own phone number in a comment
    # E-mail and Notion are the business's own places: they carry the whole answer.
    [mail] = sandbox.smtp.messages
    assert CANARY_SENTENCE in mail.text and CANARY_PHONE in mail.text
    assert CANARY_SENTENCE in mail.message.get_body(preferencelist=("html",)).get_content()
    [page] = pages(sandbox)
    body = " ".join(
        block_fingerprint(block)[1] for block in sandbox.state.notion.children(page["id"])
    )
    assert CANARY_SENTENCE in body and CANARY_PHONE in body


def test_malformed_timestamp_and_missing_required_answer_need_attention(channels, sandbox):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))

    result = run(spreadsheet_id)

    assert result["needs_attention"] == [
        {
            "row": MALFORMED_TIMESTAMP_ROW,
            "counted": False,
            "problems": [
                {"kind": "unreadable_timestamp", "cell": sample_form_rows(0)[9][0]},
            ],
        },
        {
            "row": MISSING_EMAIL_ROW,
            "counted": False,
            "problems": [{"kind": "missing_answer", "question": "이메일 주소"}],
        },
    ]
    assert result["needs_attention_total"] == 2
    # Consumed with the window: the next run does not list them again.
    again = run(spreadsheet_id)
    assert again["needs_attention"] == [] and again["deliveries"] == []


def test_new_rows_between_runs_are_digested_exactly_once(channels, sandbox):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))
    first = run(spreadsheet_id)
    rows = sample_form_sheet(2)
    rows[3][-1] = "수정한 의견"  # an old response edited after it was digested
    sandbox.state.sheets.set_values(spreadsheet_id, TAB, rows)

    second = run(spreadsheet_id)
    third = run(spreadsheet_id)

    assert first["responses"] == 22
    assert (second["window"]["first_row"], second["window"]["last_row"]) == (26, 31)
    assert second["responses"] == 6 and second["needs_attention"] == []
    assert second["questions"]["의견"]["answers"] == 5  # row 30 left it empty
    assert "수정한 의견" not in json.dumps(second, ensure_ascii=False)
    assert third["responses"] == 0 and third["deliveries"] == []
    assert third["watermark"] == {"status": "unchanged", "row": 31}
    assert [page_title(p) for p in pages(sandbox)] == [
        f"{SAMPLE_FORM_NAME} digest 2026-11-20..2026-11-22",
        f"{SAMPLE_FORM_NAME} digest 2026-11-24..2026-11-25",
    ]
    assert len(slack_posts(sandbox)) == 2 and len(sandbox.smtp.messages) == 2


@pytest.mark.parametrize("empty", ["skip", "note"])
def test_an_empty_window(channels, sandbox, moltbot_home, empty):
    header_only = seed(sandbox, [list(sample_form_sheet(1)[0])])

    result = run(header_only, empty=empty)

    assert result["responses"] == 0 and result["questions"] == {}
    assert pages(sandbox) == []
    assert watermark(header_only).position is None
    if empty == "skip":
        assert result["deliveries"] == []
        assert slack_posts(sandbox) == [] and sandbox.smtp.messages == []
        assert not (moltbot_home / "outbox").exists()
        return
    assert statuses(result) == dict.fromkeys(CHANNELS, "done")
    [post] = slack_posts(sandbox)
    # The notification text is the note's block flattened: the bold title, then the note.
    assert f"No new responses to {SAMPLE_FORM_NAME} since the last" in post["text"]
    assert sandbox.smtp.messages[0].subject == f"{SAMPLE_FORM_NAME}: no new responses"
    # One note per run: the key is the flow run's, so a retry of this run would skip it.
    assert all(":empty:" in outcome["key"] for outcome in result["deliveries"])


def test_notion_429_then_success_gives_exactly_one_page(channels, sandbox):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))
    sandbox.state.notion.core.inject_fault(status=429, retry_after=1, method="POST", path=PAGES)

    with recorded_sleeps() as waits:
        result = run(spreadsheet_id)

    assert 1.0 in waits  # Notion's Retry-After honoured (recorded, not waited out)
    assert result["notion"]["status"] == "done"
    assert len(pages(sandbox)) == 1
    assert [r.status for r in sandbox.state.notion.core.requests_to("POST", PAGES)] == [429, 200]


def test_a_lost_notion_answer_adopts_the_page_instead_of_a_second(channels, sandbox):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))
    sandbox.state.notion.fail_after_apply(1, status=500, method="POST", path=PAGES)

    result = run(spreadsheet_id)

    [page] = pages(sandbox)
    assert result["notion_page_id"] == page["id"]
    assert len(sandbox.state.notion.core.requests_to("POST", PAGES)) == 1


def test_notion_failing_fails_the_run_keeps_the_watermark_and_the_retry_digests_the_same_rows(
    channels, sandbox
):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))
    sandbox.state.notion.core.inject_fault(status=400, count=None, method="POST", path=PAGES)

    state = run(spreadsheet_id, return_state=True)

    assert state.is_failed()
    with pytest.raises(DeliveryFailed, match="the Notion page was not created") as raised:
        state.result()
    failed = raised.value.result
    assert failed["notion"]["status"] == "failed" and failed["deliveries"] == []
    assert pages(sandbox) == [] and slack_posts(sandbox) == [] and sandbox.smtp.messages == []
    mark = watermark(spreadsheet_id)
    assert mark.position is None and mark.pending["row"] == 25  # held, not advanced

    sandbox.state.notion.core.clear_faults()
    retried = run(spreadsheet_id)

    assert (retried["window"]["first_row"], retried["window"]["last_row"]) == (2, 25)
    assert retried["window"]["resumed"] is True
    assert retried["responses"] == 22 and statuses(retried) == dict.fromkeys(CHANNELS, "done")
    assert len(pages(sandbox)) == 1 and len(slack_posts(sandbox)) == 1
    assert watermark(spreadsheet_id).position["row"] == 25


def test_a_page_created_by_a_failed_attempt_is_adopted_by_the_next_run(channels, sandbox):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))
    notion = sandbox.state.notion
    # The create lands but its answer is lost, and the lookup by key fails too: the run fails
    # not knowing whether the page exists.
    notion.fail_after_apply(1, status=500, method="POST", path=PAGES)
    notion.core.inject_fault(status=503, count=None, method="POST", path=r"/query$")

    with pytest.raises(DeliveryFailed):
        run(spreadsheet_id)
    notion.core.clear_faults()
    retried = run(spreadsheet_id)

    [page] = pages(sandbox)
    assert (retried["notion"]["status"], retried["notion"]["recovered"]) == ("done", True)
    assert retried["notion_page_id"] == page["id"] and retried["notion_url"] == page["url"]
    assert len(slack_posts(sandbox)) == 1


def test_a_failed_channel_is_retried_alone_and_nothing_is_made_twice(channels, sandbox):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))
    webhook = sandbox.slack_webhook_url(WEBHOOK)
    sandbox.state.slack.unregister_webhook(webhook)  # 404: a permanent failure

    with pytest.raises(DeliveryFailed, match="digest-slack") as raised:
        run(spreadsheet_id)
    assert statuses(raised.value.result) == {
        "digest-slack": "dead",
        "sandbox-email": "done",
        "outbox": "done",
    }
    assert raised.value.result["watermark"]["status"] == "held"
    sandbox.state.slack.register_webhook(webhook)
    # The dead letter waits for a replay; the next run only re-checks (nothing new is sent).
    with pytest.raises(DeliveryFailed, match="digest-slack: dead"):
        run(spreadsheet_id)
    replayed = CliRunner().invoke(app, ["outbox", "replay", "--all"])
    assert replayed.exit_code == 0, replayed.output
    retried = run(spreadsheet_id)
    again = run(spreadsheet_id)

    assert retried["notion"]["status"] == "already_done"
    assert statuses(retried) == {
        "digest-slack": "already_done",
        "sandbox-email": "already_done",
        "outbox": "already_done",
    }
    assert retried["watermark"]["status"] == "advanced"
    assert again["deliveries"] == []
    assert len(pages(sandbox)) == 1 and len(slack_posts(sandbox)) == 1
    assert len(sandbox.smtp.messages) == 1
    with Ledger.from_settings() as ledger:
        effects = ledger.effects(automation="form-digest")
    # Three channels, one ops announcement of the dead letter (to the outbox), one page.
    assert sorted((e.kind, e.status) for e in effects) == [
        *[("message", EffectStatus.DONE)] * 4,
        ("notion_page", EffectStatus.DONE),
    ]
    assert sum(e.key.startswith("moltbot-ops:") for e in effects) == 1


def test_a_long_digest_goes_to_notion_in_chunks_of_100_blocks(channels, sandbox):
    header = ["Timestamp", "Comment"]
    rows = [
        [f"11/24/2026 {9 + i // 60}:{i % 60:02d}:00", f"comment number {i}"] for i in range(150)
    ]
    spreadsheet_id = seed(sandbox, [header, *rows])

    result = run(
        spreadsheet_id,
        required_columns=None,
        nps_column=None,
        skip_columns=None,
        max_text_answers=150,
    )

    assert result["questions"]["Comment"]["kind"] == "text"
    assert len(result["questions"]["Comment"]["listed"]) == 150
    [page] = pages(sandbox)
    assert len(sandbox.state.notion.children(page["id"])) > 150
    core = sandbox.state.notion.core
    assert core.count("POST", PAGES) == 1 and core.count("PATCH", r"/children$") == 1


def test_a_100000_row_sheet_is_read_with_one_values_request(sandbox, prefect_api, sandbox_blocks):
    header = ["Timestamp", "Plan", "Score", "Note"]
    rows = [
        [f"11/{1 + i // 5000}/2026 {i // 300 % 16 + 8}:{i // 5 % 60:02d}:{i % 60:02d}",
         ("Free", "Pro", "Team")[i % 3], str(i % 5 + 1), f"note {i}"]
        for i in range(100_000)
    ]  # fmt: skip
    spreadsheet_id = seed(sandbox, [header, *rows])
    sheets = sandbox.state.sheets
    sheets.core.clear_requests()

    result = run(
        spreadsheet_id,
        channels=["outbox"],
        notion_block=None,
        notion_database_id=None,
        required_columns=None,
        nps_column=None,
        skip_columns=None,
        timezone="America/New_York",
    )

    assert result["rows"] == 100_000 and result["responses"] == 100_000
    assert result["questions"]["Plan"]["options"][0] == {
        "value": "Free",
        "count": 33_334,
        "pct": 33.3,
    }
    assert result["questions"]["Score"]["mean"] == 3
    assert result["questions"]["Note"]["more"] == 100_000 - 20
    assert [(r.method, r.path) for r in sheets.core.requests if r.path != "/token"] == [
        ("GET", f"/v4/spreadsheets/{spreadsheet_id}/values/'{TAB}'")
    ]


def test_dry_run_creates_sends_and_holds_nothing(channels, sandbox, moltbot_home):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))

    result = run(spreadsheet_id, dry_run=True)

    assert result["responses"] == 22
    assert result["notion"]["status"] == "dry_run"
    assert set(statuses(result).values()) == {"dry_run"}
    assert result["artifacts"][0]["key"] is None
    assert pages(sandbox) == [] and slack_posts(sandbox) == [] and sandbox.smtp.messages == []
    mark = watermark(spreadsheet_id)
    assert mark.position is None and mark.pending is None
    with Ledger.from_settings() as ledger:
        assert ledger.effects() == []


def test_korean_locale_round_trips(channels, sandbox, monkeypatch):
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))

    run(spreadsheet_id)

    [page] = pages(sandbox)
    assert page_title(page) == f"{SAMPLE_FORM_NAME} 응답 요약 2026-11-20..2026-11-22"
    [post] = slack_posts(sandbox)
    assert "*새 응답 22개*" in post["blocks"][1]["text"]["text"]
    assert "확인이 필요한 행 2개: 11, 17행" in post["blocks"][-1]["elements"][0]["text"]
    texts = [block_fingerprint(b)[1] for b in sandbox.state.notion.children(page["id"])]
    assert "11행: 읽을 수 없는 타임스탬프" in " ".join(texts)


def test_the_artifact_masks_contact_details(channels, sandbox):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    spreadsheet_id = seed(sandbox, sample_form_sheet(1))

    result = run(spreadsheet_id)

    [artifact] = result["artifacts"]
    with get_client(sync_client=True) as client:
        [stored] = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact["id"]]))
        )
    assert artifact["key"] == "form-digest"
    window = result["window"]
    assert stored.description == (
        f"form-digest {window['start'][:16].replace('T', ' ')} – "
        f"{window['end'][:16].replace('T', ' ')} · {SAMPLE_FORM_NAME} · "
        f"sheet rows {window['first_row']}–{window['last_row']}, 22 responses"
    )
    assert window["start"].startswith("2026-11-20")
    assert "시간이 조금 길게 느껴졌어요." in stored.data
    assert "010-2345-6789" not in stored.data and "minjun.kim@" not in stored.data


def _sheet_with(rows: list[list[str]]) -> list[list[str]]:
    return [list(sample_form_sheet(1)[0]), *rows]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"required_columns": ["전화번호"]}, "required_columns: column '전화번호' not in"),
        ({"timestamp_column": "Zeitstempel"}, "timestamp column 'Zeitstempel' is not in the sheet"),
        ({"nps_column": "만족도", "question_kinds": None}, None),
        ({"nps_column": "참여 방식"}, "nps_column '참여 방식' is not a 0-10 question: row 2"),
        ({"max_text_answers": -1}, "max_text_answers must be 0 or more"),
        ({"empty": "sometimes"}, "empty must be one of skip, note, got 'sometimes'"),
        ({"notion_database_id": None}, "give both notion_block and notion_database_id"),
        ({"sheets_block": "shop-sheets"}, "unknown Google Sheets Credentials block 'shop-sheets'"),
        ({"channels": ["nowhere"]}, "unknown channel 'nowhere'"),
        ({"question_kinds": {"의견": "essay"}}, "question_kinds: unknown kind 'essay'"),
        (
            {"notion_database_id": "5a1d0b07-0000-4000-8000-00000000dead"},
            "notion_database_id '5a1d0b07-0000-4000-8000-00000000dead'",
        ),
    ],
    ids=[
        "required", "timestamp", "nps-ok", "nps", "max-text", "empty", "notion-pair",
        "sheets-block", "channel", "kind", "database",
    ],
)  # fmt: skip
def test_bad_input_fails_clearly_before_any_effect(
    channels, sandbox, moltbot_home, params, message
):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))
    if message is None:  # a 1-5 rating is a valid 0-10 column: this one runs
        assert run(spreadsheet_id, **params)["questions"]["만족도"]["kind"] == "nps"
        return

    with pytest.raises(InputError) as raised:
        run(spreadsheet_id, **params)

    assert message in str(raised.value)
    assert pages(sandbox) == [] and sandbox.state.slack.attempts == 0
    assert_only_the_failed_run_is_audited(moltbot_home)


def test_a_database_without_the_digest_properties_is_bad_input(channels, sandbox, moltbot_home):
    database_id, _ = sandbox.state.notion.add_database("메모", {"이름": "title", "Date": "date"})
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))

    with pytest.raises(InputError, match=r"cannot hold digests: it needs 'Responses' \(number\)"):
        run(spreadsheet_id, notion_database_id=database_id)

    assert sandbox.state.notion.core.count("POST", PAGES) == 0
    assert_only_the_failed_run_is_audited(moltbot_home)


def test_a_sheet_without_a_header_is_bad_input(channels, sandbox, moltbot_home):
    spreadsheet_id = seed(sandbox, [])

    with pytest.raises(InputError, match="the sheet is empty: not even a header row"):
        run(spreadsheet_id)


def test_cli_dry_run_json_prints_the_digest(channels, sandbox):
    spreadsheet_id = seed(sandbox, _sheet_with([
        [forms_timestamp(datetime(2026, 11, 24, 15, 12, 45)),
         "김민준", "a@example.com", "온라인", "AI, 보안", "5", "10", "좋아요"],
    ]))  # fmt: skip

    result = CliRunner().invoke(
        app,
        [
            "run", "form-digest",
            "--param", "sheets_block=sandbox-sheets",
            "--param", f"spreadsheet_id={spreadsheet_id}",
            "--param", f"worksheet={TAB}",
            "--dry-run", "--json",
        ],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["window"]["start"] == "2026-11-24T15:12:45+09:00"
    assert document["responses"] == 1
    assert document["questions"]["의견"] == {
        "kind": "text",
        "answers": 1,
        "listed": ["좋아요"],
        "more": 0,
    }
    [outcome] = document["deliveries"]
    assert (outcome["channel"], outcome["status"]) == ("outbox", "dry_run")
    assert outcome["key"].startswith(f"form-digest:{spreadsheet_id}/{TAB}:2-2:")
    assert watermark(spreadsheet_id).position is None


def test_cli_bad_input_exits_2_with_one_line(channels, sandbox):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))

    result = CliRunner().invoke(
        app,
        [
            "run", "form-digest",
            "--param", "sheets_block=sandbox-sheets",
            "--param", f"spreadsheet_id={spreadsheet_id}",
            "--param", f"worksheet={TAB}",
            "--param", 'required_columns=["전화번호"]',
        ],
    )  # fmt: skip

    assert result.exit_code == 2
    assert "required_columns: column '전화번호' not in the sheet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_outbox_is_the_default_channel(sandbox, sandbox_blocks, moltbot_home: Path):
    spreadsheet_id = seed(sandbox, sample_form_sheet(1))

    result = form_digest(
        sheets_block="sandbox-sheets", spreadsheet_id=spreadsheet_id, worksheet=TAB
    )

    assert statuses(result) == {"outbox": "done"}
    assert result["form"] == TAB
    [written] = (moltbot_home / "outbox").glob("form-digest-*.md")
    assert written.read_text(encoding="utf-8").startswith(f"# {TAB} digest 2026-11-20..")
