"""Form-digest rendering: wording per locale, escaping of answers, Notion blocks and schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from flows.form_digest.digest import Digest
from flows.form_digest.render import (
    DigestDatabase,
    build_digest_message,
    build_empty_note,
    check_digest_schema,
    digest_context,
    markdown_blocks,
    notion_page_content,
    window_key,
)
from flows.shared.forms import ResponseWindow
from moltbot.errors import InputError
from tasks.notion import block_fingerprint

NOW = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)
DATABASE = DigestDatabase("db", "ds", "Name", has_form=True)


def window(first: int = 2, last: int = 4) -> ResponseWindow:
    rows = pd.DataFrame({"t": ["x"] * (last - first + 1)}, index=range(first, last + 1))
    return ResponseWindow(
        rows=rows,
        times=pd.Series(pd.NaT, index=rows.index),
        position={"row": last, "cell": "x", "time": None},
        start=datetime(2026, 11, 23, 15, 0, tzinfo=UTC),  # 24 Nov 00:00 in Seoul
        end=datetime(2026, 11, 24, 6, 12, tzinfo=UTC),
        fingerprint="abc123",
    )


def digest(**overrides: Any) -> Digest:
    values: dict[str, Any] = {
        "rows": 3,
        "responses": 2,
        "questions": {
            "참여 | 방식": {
                "kind": "choice",
                "answers": 2,
                "options": [{"value": "<온라인>", "count": 2, "pct": 100.0}],
                "other": None,
            },
            "의견": {"kind": "text", "answers": 2, "listed": ["좋아요 & <b>감사</b>"], "more": 1},
        },
        "needs_attention": [
            {
                "row": 3,
                "counted": False,
                "problems": [{"kind": "missing_answer", "question": "이메일"}],
            }
        ],
    }
    values.update(overrides)
    return Digest(**values)


def context(**overrides: Any) -> dict[str, Any]:
    return digest_context(
        digest(**overrides), window(), form="만족도 설문", timezone="Asia/Seoul", now=NOW
    )


def test_the_window_key_names_stream_rows_and_fingerprint():
    assert window_key("sheet/탭", window()) == "form-digest:sheet/탭:2-4:abc123"


@pytest.mark.parametrize(
    ("locale", "title", "summary"),
    [
        ("en", "만족도 설문 digest 2026-11-24..2026-11-24", "*2 new responses*"),
        ("ko", "만족도 설문 응답 요약 2026-11-24..2026-11-24", "*새 응답 2개*"),
    ],
)
def test_digest_message_per_locale(locale, title, summary):
    message = build_digest_message(
        context(), key="k", locale=locale, notion_url="https://www.notion.so/abc"
    )

    assert message.title == title
    assert message.key == "k" and message.severity == "warning"
    blocks = message.slack_blocks
    assert blocks[0]["text"]["text"] == title
    assert blocks[1]["text"]["text"].startswith(f"{summary} · 2026-11-24 00:00")
    assert "https://www.notion.so/abc" in blocks[1]["text"]["text"]
    assert message.file_stem == "form-digest-만족도 설문-2026-11-24-rows-2-4"


def test_answers_are_escaped_for_each_channel():
    message = build_digest_message(context(), key="k", locale="en", notion_url=None)

    slack = message.slack_blocks[2]["text"]["text"]
    assert "• *참여 | 방식*: &lt;온라인&gt; 100.0%" in slack
    assert "좋아요 &amp; &lt;b&gt;감사&lt;/b&gt;" in message.html
    assert "<b>감사</b>" not in message.html
    # A pipe in a question stays inside its Markdown table cell.
    assert "| 참여 \\| 방식 | choice | 2 | <온라인> 100.0% |" in message.markdown
    assert "- 좋아요 & <b>감사</b>\n…and 1 more" in message.markdown
    assert '- row 3: no answer to the required "이메일" (not counted)' in message.markdown


def test_a_clean_window_is_info_without_attention_footer():
    message = build_digest_message(
        context(needs_attention=[]), key="k", locale="en", notion_url=None
    )

    assert message.severity == "info"
    footer = message.slack_blocks[-1]["elements"][0]["text"]
    assert footer == "moltbot form-digest · sheet rows 2–4 · Asia/Seoul"
    assert "Open the digest in Notion" not in message.slack_blocks[1]["text"]["text"]


def test_many_rows_needing_attention_are_all_named():
    attention = [
        {"row": row, "counted": False, "problems": [{"kind": "unreadable_timestamp", "cell": ""}]}
        for row in range(2, 80)
    ]

    message = build_digest_message(
        context(needs_attention=attention), key="k", locale="en", notion_url=None
    )

    assert message.markdown.count("- row ") == 50
    assert "…and 28 more: rows 52–79" in message.markdown
    assert "78 rows need attention: rows 2–79" in message.slack_blocks[-1]["elements"][0]["text"]


@pytest.mark.parametrize(
    ("locale", "text"),
    [
        ("en", "No new responses to 설문 since the last digest (the latest digested response "
               "came in 2026-11-24 15:12). Checked 2026-11-25 09:30 (Asia/Seoul)."),
        ("ko", "지난 요약 이후 설문에 새 응답이 없습니다 (마지막으로 요약한 응답: "
               "2026-11-24 15:12). 확인 시각 2026-11-25 09:30 (Asia/Seoul)."),
    ],
)  # fmt: skip
def test_empty_note(locale, text):
    note = build_empty_note(
        form="설문",
        key="form-digest:s/t:empty:run-1",
        since=datetime(2026, 11, 24, 6, 12, tzinfo=UTC),
        now=NOW,
        timezone="Asia/Seoul",
        locale=locale,
    )

    assert note.text == text
    assert note.key == "form-digest:s/t:empty:run-1"


def test_markdown_becomes_notion_blocks():
    blocks = markdown_blocks(
        "# 제목\n\n문단 하나\n\n## 표\n\n| 질문 | 수 |\n|---|---|\n| a \\| b | 1 |\n\n"
        "- 항목\n---\n### 끝\n"
    )

    assert [block["type"] for block in blocks] == [
        "heading_1", "paragraph", "heading_2", "table", "bulleted_list_item", "divider",
        "heading_3",
    ]  # fmt: skip
    [_, row] = blocks[3]["table"]["children"]
    assert [cell[0]["text"]["content"] for cell in row["table_row"]["cells"]] == ["a | b", "1"]
    assert blocks[3]["table"]["has_column_header"] is True
    assert block_fingerprint(blocks[4]) == ("bulleted_list_item", "항목")


def test_a_long_table_is_split_into_tables_of_100_rows():
    lines = ["| v | n |", "|---|---|", *(f"| {i} | 1 |" for i in range(150))]

    blocks = markdown_blocks("\n".join(lines))

    assert [len(block["table"]["children"]) for block in blocks] == [100, 52]


def test_notion_page_properties_and_body():
    properties, body = notion_page_content(DATABASE, context(), "en")

    assert properties["Name"]["title"][0]["text"]["content"] == (
        "만족도 설문 digest 2026-11-24..2026-11-24"
    )
    assert properties["Date"] == {"date": {"start": "2026-11-24", "end": None}}
    assert properties["Responses"] == {"number": 2}
    assert properties["Form"] == {"select": {"name": "만족도 설문"}}
    # The page shows its own title: the body starts with the figures.
    assert block_fingerprint(body[0])[1].startswith("2 responses from 2026-11-24 00:00")
    assert body[1]["type"] == "heading_2"


def test_the_digest_schema_is_checked_before_creating():
    properties = {
        "Name": {"type": "title"},
        "Date": {"type": "date"},
        "Responses": {"type": "number"},
        "moltbot key": {"type": "rich_text"},
    }

    database = check_digest_schema("db", "ds", properties)

    assert database == DigestDatabase("db", "ds", "Name", has_form=False)
    with pytest.raises(InputError, match=r"needs 'Responses' \(number\) \(it has: Date, Name, "):
        check_digest_schema("db", "ds", {**properties, "Responses": {"type": "rich_text"}})
    without_title = {name: spec for name, spec in properties.items() if name != "Name"}
    with pytest.raises(InputError, match="it needs a title property"):
        check_digest_schema("db", "ds", without_title)
