"""Notion tasks against the Notion emulator, through the real notion-client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pytest

from blocks.notion import NotionCredentials
from moltbot.errors import InputError
from moltbot.retrying import RetryPolicy, recorded_sleeps
from moltbot.sandbox import Sandbox
from moltbot.sandbox.kit import EmulatorCore
from moltbot.sandbox.notion import (
    SANDBOX_DIGEST_DATA_SOURCE_ID,
    SANDBOX_DIGEST_DATABASE_ID,
    SANDBOX_NOTION_TOKEN,
    SANDBOX_ROOT_PAGE_ID,
    NotionState,
)
from tasks.notion import (
    NotionApi,
    NotionFailure,
    block_fingerprint,
    bulleted_item,
    checkbox_property,
    date_property,
    divider,
    heading,
    number_property,
    pages_to_frame,
    paragraph,
    property_value,
    rich_text,
    select_property,
    split_text,
    table,
    text_property,
    title_property,
)
from tests.sandbox.helpers import notion_block

DS = SANDBOX_DIGEST_DATA_SOURCE_ID
PAGES = r"^/v1/pages$"
QUERY = r"/query$"
CHILDREN = r"/children$"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def statuses(core: EmulatorCore) -> list[tuple[str, str, int]]:
    """(method, path, status) of every logged request, ids shown as ``{id}``."""
    return [(r.method, UUID.sub("{id}", r.path), r.status) for r in core.requests]


@pytest.fixture
def notion(sandbox: Sandbox) -> NotionState:
    return sandbox.state.notion


@pytest.fixture
def api(notion_credentials: NotionCredentials) -> Iterator[NotionApi]:
    with NotionApi.from_block(notion_credentials, "sandbox-notion") as notion_api:
        yield notion_api


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [block_fingerprint(block)[1] for block in blocks]


def numbered(count: int, prefix: str = "줄") -> list[dict[str, Any]]:
    return [paragraph(f"{prefix} {i}") for i in range(count)]


# -- reading ----------------------------------------------------------------------------------


def test_query_gives_a_frame_of_plain_values(api: NotionApi, notion: NotionState):
    notion.add_page(
        data_source_id=DS,
        properties={"Name": "11월 설문", "Form": "만족도", "Responses": 42, "Date": "2025-11-24",
                    "Reviewed": True, "Status": "New", "moltbot key": "설문:1"},
    )  # fmt: skip
    notion.add_page(data_source_id=DS, properties={"Name": "빈 응답"})

    frame = api.query_frame(DS, sorts=[{"property": "Name", "direction": "ascending"}])

    assert list(frame.columns) == [
        "page_id", "page_url", "created_time",
        "Name", "Date", "Responses", "Form", "Status", "Reviewed", "moltbot key",
    ]  # fmt: skip
    assert frame["Name"].tolist() == ["11월 설문", "빈 응답"]
    assert frame["Form"].tolist()[0] == "만족도" and pd.isna(frame["Form"].tolist()[1])
    assert frame["Status"].tolist()[0] == "New"
    assert frame["Responses"].tolist()[0] == 42 and pd.isna(frame["Responses"].tolist()[1])
    assert frame["Date"].tolist()[0] == date(2025, 11, 24)
    assert frame["Reviewed"].tolist() == [True, False]
    assert frame["moltbot key"].tolist() == ["설문:1", ""]
    created = frame["created_time"].tolist()[0]
    assert isinstance(created, datetime) and created.tzinfo is not None
    assert len(notion.core.requests_to("POST", QUERY)) == 1


def test_query_follows_every_page(api: NotionApi, notion: NotionState):
    for i in range(250):
        notion.add_page(data_source_id=DS, properties={"Name": f"행 {i}", "Responses": i})

    frame = api.query_frame(DS, filter={"property": "Responses", "number": {"greater_than": -1}})

    assert frame["Name"].tolist() == [f"행 {i}" for i in range(250)]
    # 100 + 100 + 50: three query requests, nothing else.
    assert statuses(notion.core) == [("POST", "/v1/data_sources/{id}/query", 200)] * 3


def test_an_empty_result_keeps_the_columns(api: NotionApi, notion: NotionState):
    frame = api.query_frame(DS)

    assert frame.empty
    assert list(frame.columns)[:4] == ["page_id", "page_url", "created_time", "Name"]
    assert "moltbot key" in frame.columns
    # The query, then the data source for its property names.
    assert [(m, s) for m, _, s in statuses(notion.core)] == [("POST", 200), ("GET", 200)]


def test_data_source_of_the_digest_database(api: NotionApi):
    assert api.data_source_of(SANDBOX_DIGEST_DATABASE_ID) == DS


def test_data_source_of_an_unknown_database_names_the_block(api: NotionApi):
    with pytest.raises(NotionFailure) as failed:
        api.data_source_of("00000000-0000-4000-8000-000000000000")

    assert str(failed.value).startswith("Notion block 'sandbox-notion': 404 object_not_found: ")
    assert failed.value.transient is False


# -- creating pages with blocks ----------------------------------------------------------------


@pytest.mark.parametrize(("blocks", "appends"), [(0, 0), (100, 0), (101, 1), (250, 2)])
def test_create_page_sends_blocks_in_chunks_of_100(
    api: NotionApi, notion: NotionState, blocks: int, appends: int
):
    page = api.create_page(
        data_source_id=DS, properties={"Name": title_property("요약")}, children=numbered(blocks)
    )

    assert texts(notion.children(page["id"])) == [f"줄 {i}" for i in range(blocks)]
    requests = notion.core.requests
    assert [(r.method, r.status) for r in requests] == [("POST", 200)] + [("PATCH", 200)] * appends


def test_korean_page_round_trip_with_long_text(api: NotionApi, notion: NotionState):
    long_text = "가나다라마바사 " * 600  # 4,800 characters: three rich-text items
    page = api.create_page(
        data_source_id=DS,
        properties={
            "Name": title_property("주간 설문 보고"),
            "Form": select_property("만족도"),
            "Responses": number_property(12),
            "Date": date_property(date(2025, 11, 24)),
            "Reviewed": checkbox_property(False),
        },
        children=[heading("요약", 2), paragraph(long_text), bulleted_item("응답 12건"), divider(),
                  table([["양식", "응답"], ["만족도", 12]])],
    )  # fmt: skip

    stored = notion.children(page["id"])
    assert [b["type"] for b in stored] == [
        "heading_2", "paragraph", "bulleted_list_item", "divider", "table",
    ]  # fmt: skip
    assert len(stored[1]["paragraph"]["rich_text"]) == 3
    assert texts(stored)[:3] == ["요약", long_text, "응답 12건"]
    cells = [
        [c[0]["plain_text"] for c in row["table_row"]["cells"]] for row in stored[4]["children"]
    ]
    assert cells == [["양식", "응답"], ["만족도", "12"]]
    frame = api.query_frame(DS)
    assert frame.loc[0, "Name"] == "주간 설문 보고" and frame.loc[0, "Form"] == "만족도"


def test_page_under_a_page(api: NotionApi, notion: NotionState):
    page = api.create_page(
        page_id=SANDBOX_ROOT_PAGE_ID, properties={"title": title_property("메모")}, children=[]
    )

    assert notion.page(page["id"])["parent"]["page_id"] == SANDBOX_ROOT_PAGE_ID


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"data_source_id": DS, "page_id": SANDBOX_ROOT_PAGE_ID},
        {"page_id": SANDBOX_ROOT_PAGE_ID, "idempotency_key": "k"},
    ],
)
def test_create_page_needs_one_parent(api: NotionApi, kwargs: dict[str, Any]):
    with pytest.raises(InputError):
        api.create_page(properties={}, **kwargs)


# -- retries and idempotency ------------------------------------------------------------------


def test_429_is_retried_after_retry_after(api: NotionApi, notion: NotionState):
    notion.core.inject_fault(429, path=QUERY, retry_after=1)

    with recorded_sleeps() as waits:
        frame = api.query_frame(DS)

    assert frame.empty
    assert waits == [1.0]  # Notion's Retry-After, recorded instead of waited out
    assert [s for _, _, s in statuses(notion.core)] == [429, 200, 200]


def test_500_on_a_query_is_retried(api: NotionApi, notion: NotionState):
    notion.add_page(data_source_id=DS, properties={"Name": "a"})
    notion.core.inject_fault(500, path=QUERY, count=2)

    frame = api.query_frame(DS)

    assert frame["Name"].tolist() == ["a"]
    assert [s for _, _, s in statuses(notion.core)] == [500, 500, 200]


def test_a_429_on_create_is_retried_without_a_lookup(api: NotionApi, notion: NotionState):
    notion.core.inject_fault(429, path=PAGES, retry_after=0)

    api.create_page(data_source_id=DS, properties={}, idempotency_key="설문:7")

    assert len(notion.pages(DS)) == 1
    assert [s for _, _, s in statuses(notion.core)] == [429, 200]


def test_a_create_applied_but_answered_500_is_adopted_not_repeated(
    api: NotionApi, notion: NotionState
):
    notion.fail_after_apply(1, method="POST", path=PAGES)

    page = api.create_page(
        data_source_id=DS,
        properties={"Name": title_property("한 번만")},
        children=numbered(150),
        idempotency_key="digest:2025-11-24:form-1",
    )

    [stored] = notion.pages(DS)
    assert page["id"] == stored["id"]
    assert stored["properties"]["moltbot key"]["rich_text"][0]["plain_text"] == (
        "digest:2025-11-24:form-1"
    )
    assert texts(notion.children(page["id"])) == [f"줄 {i}" for i in range(150)]
    assert statuses(notion.core) == [
        ("POST", "/v1/pages", 500),
        ("POST", "/v1/data_sources/{id}/query", 200),  # the key lookup finds the page
        ("GET", "/v1/blocks/{id}/children", 200),  # it holds the first 100 blocks
        ("PATCH", "/v1/blocks/{id}/children", 200),  # the other 50
    ]


def test_a_create_refused_with_500_is_sent_again_after_the_lookup(
    api: NotionApi, notion: NotionState
):
    notion.core.inject_fault(500, path=PAGES)

    api.create_page(data_source_id=DS, properties={}, idempotency_key="k-1")

    assert len(notion.pages(DS)) == 1
    assert [(m, s) for m, _, s in statuses(notion.core)] == [
        ("POST", 500), ("POST", 200), ("POST", 200),
    ]  # fmt: skip


def test_without_a_key_an_ambiguous_create_is_not_sent_twice(api: NotionApi, notion: NotionState):
    notion.fail_after_apply(1, method="POST", path=PAGES)

    with pytest.raises(NotionFailure) as failed:
        api.create_page(data_source_id=DS, properties={})

    assert len(notion.pages(DS)) == 1
    assert "not re-sent" in str(failed.value)
    assert str(failed.value).startswith(
        "Notion block 'sandbox-notion': 500 internal_server_error: Internal error after applying"
    )
    assert len(notion.core.requests) == 1


def test_a_dropped_append_that_happened_is_not_repeated(api: NotionApi, notion: NotionState):
    notion.fail_after_apply(1, kind="drop", method="PATCH", path=CHILDREN)

    page = api.create_page(data_source_id=DS, properties={}, children=numbered(250))

    assert texts(notion.children(page["id"])) == [f"줄 {i}" for i in range(250)]
    assert [(m, s) for m, _, s in statuses(notion.core)] == [
        ("POST", 200),
        ("PATCH", 200),  # stored, but the connection was dropped before the answer
        ("GET", 200),  # 100 children: the first page of the listing …
        ("GET", 200),  # … and the 100 just appended: done, not sent again
        ("PATCH", 200),
    ]


def test_an_append_refused_with_503_is_sent_again(api: NotionApi, notion: NotionState):
    notion.core.inject_fault(503, method="PATCH", path=CHILDREN)

    page = api.create_page(data_source_id=DS, properties={}, children=numbered(150))

    assert texts(notion.children(page["id"])) == [f"줄 {i}" for i in range(150)]
    assert [(m, s) for m, _, s in statuses(notion.core)] == [
        ("POST", 200), ("PATCH", 503), ("GET", 200), ("PATCH", 200),
    ]  # fmt: skip


def test_a_standalone_append_recognises_its_first_chunk(api: NotionApi, notion: NotionState):
    page = notion.add_page(data_source_id=DS, properties={}, children=numbered(3, "기존"))
    notion.fail_after_apply(1, status=502, method="PATCH", path=CHILDREN)

    appended = api.append_blocks(page["id"], numbered(2, "추가"))

    assert texts(appended) == ["추가 0", "추가 1"]
    assert texts(notion.children(page["id"])) == ["기존 0", "기존 1", "기존 2", "추가 0", "추가 1"]


def test_update_page_is_retried(api: NotionApi, notion: NotionState):
    page = notion.add_page(data_source_id=DS, properties={"Name": "a"})
    notion.core.inject_fault(500, method="PATCH")

    updated = api.update_page(page["id"], properties={"Status": select_property("Done")})

    assert updated["properties"]["Status"]["select"]["name"] == "Done"
    assert notion.page(page["id"])["properties"]["Status"]["select"]["name"] == "Done"


def test_a_4xx_fails_at_once_with_notions_message(api: NotionApi, notion: NotionState):
    with pytest.raises(NotionFailure) as failed:
        api.create_page(data_source_id=DS, properties={"Colour": text_property("x")})

    assert str(failed.value) == (
        "Notion block 'sandbox-notion': 400 validation_error: Colour is not a property that exists."
    )
    assert failed.value.status == 400 and failed.value.transient is False
    assert len(notion.core.requests) == 1


def test_a_wrong_token_names_the_block(sandbox: Sandbox, notion: NotionState):
    wrong = NotionCredentials(token="secret_not-the-token", base_url=f"{sandbox.base_url}/notion")

    with pytest.raises(NotionFailure) as failed:
        NotionApi.from_block(wrong, "team-notion").query_frame(DS)

    message = str(failed.value)
    assert message == "Notion block 'team-notion': 401 unauthorized: API token is invalid."
    assert "secret_not-the-token" not in message
    assert len(notion.core.requests) == 1  # not retried


def test_a_stopped_emulator_fails_within_seconds():
    with Sandbox() as stopped:
        credentials = notion_block(stopped.base_url)
    base = credentials.base_url

    with recorded_sleeps() as waits, pytest.raises(NotionFailure) as failed:
        NotionApi.from_block(credentials, "sandbox-notion").query_frame(DS)

    assert len(waits) == 3  # four attempts, then the failure
    assert str(failed.value).startswith(
        f"Notion block 'sandbox-notion': cannot connect to {base} (ConnectError)"
    )
    assert failed.value.transient is True


def test_the_default_policy_gives_up_on_a_dead_server_within_ten_seconds():
    credentials = NotionCredentials(token=SANDBOX_NOTION_TOKEN, base_url="http://127.0.0.1:9")
    waits: list[float] = []
    api = NotionApi.from_block(credentials, "sandbox-notion", policy=RetryPolicy())
    api.sleep = waits.append

    with pytest.raises(NotionFailure, match="cannot connect"):
        api.query_pages(DS)

    # Four attempts: a service that is down is reported within seconds, not minutes.
    assert len(waits) == 3
    assert sum(waits) < 10


def test_a_hanging_server_times_out_and_the_query_is_retried(sandbox: Sandbox, notion: NotionState):
    credentials = notion_block(sandbox.base_url, timeout_seconds=0.3)
    notion.core.inject_fault(kind="hang", seconds=0.8, path=QUERY)

    with recorded_sleeps() as waits:
        frame = NotionApi.from_block(credentials).query_frame(DS)

    assert frame.empty
    assert len(waits) == 1  # one timeout, one retry: the hang was not waited out


# -- plain helpers ----------------------------------------------------------------------------


def test_split_text_counts_utf16_units():
    assert split_text("") == []
    assert [len(p) for p in split_text("가" * 4001)] == [2000, 2000, 1]
    # An emoji is two units: 1,000 of them fill one item exactly.
    assert [len(p) for p in split_text("😀" * 1001)] == [1000, 1]


def test_rich_text_annotations_links_and_limit():
    [item] = rich_text("굵게", bold=True, link="https://example.com")

    assert item["annotations"] == {"bold": True}
    assert item["text"]["link"] == {"url": "https://example.com"}
    with pytest.raises(InputError, match="longer than one Notion block"):
        rich_text("a" * (2000 * 100 + 1))


def test_table_pads_short_rows_and_refuses_too_many():
    block = table([["a", "b", "c"], ["d"]], header=False)

    assert block["table"]["table_width"] == 3
    assert block["table"]["has_column_header"] is False
    assert [len(r["table_row"]["cells"]) for r in block["table"]["children"]] == [3, 3]
    with pytest.raises(InputError):
        table([["x"]] * 101)
    with pytest.raises(InputError):
        heading("x", level=4)


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"type": "title", "title": [{"plain_text": "가"}, {"plain_text": "나"}]}, "가나"),
        ({"type": "number", "number": 2.5}, 2.5),
        ({"type": "select", "select": None}, None),
        ({"type": "status", "status": {"name": "Done"}}, "Done"),
        ({"type": "multi_select", "multi_select": [{"name": "a"}, {"name": "b"}]}, ["a", "b"]),
        ({"type": "date", "date": {"start": "2025-11-24"}}, date(2025, 11, 24)),
        (
            {"type": "date", "date": {"start": "2025-11-24T09:00:00.000+09:00"}},
            datetime(2025, 11, 24, tzinfo=UTC),
        ),
        ({"type": "checkbox", "checkbox": True}, True),
        ({"type": "url", "url": None}, None),
        ({"type": "relation", "relation": [{"id": "r1"}]}, ["r1"]),
        ({"type": "formula", "formula": {"type": "number", "number": 3}}, 3),
        ({"type": "unique_id", "unique_id": {"prefix": "OPS", "number": 7}}, "OPS-7"),
    ],
)
def test_property_value(prop: dict[str, Any], expected: Any):
    assert property_value(prop) == expected


def test_a_property_named_like_a_meta_column_does_not_overwrite_it():
    prop = {"type": "rich_text", "rich_text": [{"plain_text": "x"}]}
    page = {"id": "p1", "url": "u", "created_time": "2025-11-24T00:00:00.000Z",
            "properties": {"page_id": prop}}  # fmt: skip

    frame = pages_to_frame([page])

    assert frame.loc[0, "page_id"] == "p1"
    assert frame.loc[0, "page_id (property)"] == "x"


# -- the Prefect tasks ------------------------------------------------------------------------
