"""Notion emulator, driven over a real socket by the real notion-client (and raw httpx)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from notion_client import APIResponseError, Client
from notion_client.helpers import collect_paginated_api

from blocks.notion import NotionCredentials
from moltbot.sandbox import Sandbox
from moltbot.sandbox.notion import (
    NOTION_VERSION,
    SANDBOX_DIGEST_DATA_SOURCE_ID,
    SANDBOX_DIGEST_DATABASE_ID,
    SANDBOX_NOTION_TOKEN,
    SANDBOX_ROOT_PAGE_ID,
    NotionAPIError,
    NotionState,
)

DS = SANDBOX_DIGEST_DATA_SOURCE_ID


@pytest.fixture
def notion(sandbox: Sandbox) -> NotionState:
    """The session sandbox's Notion state (conftest.py resets it around each test)."""
    return sandbox.state.notion


@pytest.fixture
def client(notion_credentials: NotionCredentials) -> Iterator[Client]:
    notion_client = notion_credentials.get_client()
    yield notion_client
    notion_client.close()


@pytest.fixture
def raw(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """Plain httpx with the right headers, for what the client library would not send."""
    headers = {"Authorization": f"Bearer {SANDBOX_NOTION_TOKEN}", "Notion-Version": NOTION_VERSION}
    with httpx.Client(base_url=f"{sandbox.base_url}/notion", headers=headers, timeout=5) as c:
        yield c


def paragraph(text: str) -> dict[str, Any]:
    return {"type": "paragraph", "paragraph": {"rich_text": [{"text": {"content": text}}]}}


def names(response: dict[str, Any]) -> list[str]:
    return [
        "".join(t["plain_text"] for t in page["properties"]["Name"]["title"])
        for page in response["results"]
    ]


# -- seeded state and search ------------------------------------------------------------------


def test_search_finds_the_seeded_digest_database(client: Client, notion: NotionState):
    found = client.search(
        query="moltbot digests", filter={"property": "object", "value": "data_source"}
    )

    [source] = found["results"]
    assert source["object"] == "data_source"
    assert source["id"] == SANDBOX_DIGEST_DATA_SOURCE_ID
    assert source["parent"] == {"type": "database_id", "database_id": SANDBOX_DIGEST_DATABASE_ID}
    types = {name: prop["type"] for name, prop in source["properties"].items()}
    assert types == {
        "Name": "title",
        "Date": "date",
        "Responses": "number",
        "Form": "select",
        "Status": "select",
        "Reviewed": "checkbox",
        "moltbot key": "rich_text",
    }
    database = client.databases.retrieve(SANDBOX_DIGEST_DATABASE_ID)
    assert database["object"] == "database"
    assert database["data_sources"] == [{"id": DS, "name": "moltbot digests"}]
    assert client.data_sources.retrieve(DS)["title"][0]["plain_text"] == "moltbot digests"
    assert len(notion.core.requests_to("POST", r"^/v1/search$")) == 1


def test_search_by_object_type(client: Client, raw: httpx.Client):
    pages = client.search(filter={"property": "object", "value": "page"})["results"]

    assert [page["id"] for page in pages] == [SANDBOX_ROOT_PAGE_ID]
    refused = raw.post("/v1/search", json={"filter": {"property": "object", "value": "database"}})
    assert refused.status_code == 400
    assert refused.json()["code"] == "validation_error"


def test_ids_are_accepted_without_dashes(client: Client):
    assert client.databases.retrieve(SANDBOX_DIGEST_DATABASE_ID.replace("-", ""))["id"] == (
        SANDBOX_DIGEST_DATABASE_ID
    )


# -- pages, properties, blocks ----------------------------------------------------------------


def test_korean_text_round_trips(client: Client, notion: NotionState):
    title = "11월 24일 설문 요약 📋"
    page = client.pages.create(
        parent={"type": "data_source_id", "data_source_id": DS},
        properties={
            "Name": {"title": [{"text": {"content": title}}]},
            "Form": {"select": {"name": "고객 만족도"}},
            "moltbot key": {"rich_text": [{"text": {"content": "설문:2025-11-24"}}]},
            "Date": {"date": {"start": "2025-11-24"}},
            "Responses": {"number": 42},
            "Reviewed": {"checkbox": True},
        },
        children=[paragraph("응답 42건, 평균 만족도 4.6점")],
    )

    fetched = client.pages.retrieve(page["id"])
    assert fetched["properties"]["Name"]["title"][0]["plain_text"] == title
    assert fetched["properties"]["Form"]["select"]["name"] == "고객 만족도"
    assert fetched["properties"]["moltbot key"]["rich_text"][0]["text"]["content"] == (
        "설문:2025-11-24"
    )
    assert fetched["parent"] == {
        "type": "data_source_id",
        "data_source_id": DS,
        "database_id": SANDBOX_DIGEST_DATABASE_ID,
    }
    [block] = client.blocks.children.list(page["id"])["results"]
    assert block["paragraph"]["rich_text"][0]["plain_text"] == "응답 42건, 평균 만족도 4.6점"
    # The new select option joined the schema, as Notion does.
    options = client.data_sources.retrieve(DS)["properties"]["Form"]["select"]["options"]
    assert [option["name"] for option in options] == ["고객 만족도"]
    assert notion.page(page["id"])["properties"]["Name"]["title"][0]["plain_text"] == title


def test_page_object_has_notions_shape(client: Client, sandbox: Sandbox):
    page = client.pages.create(parent={"data_source_id": DS}, properties={})

    assert page["object"] == "page"
    # Notion's url opens the page; the sandbox's opens its inbox page for it.
    assert page["url"] == f"{sandbox.base_url}/inbox/notion/{page['id'].replace('-', '')}"
    assert page["archived"] is False and page["in_trash"] is False
    assert page["created_time"].endswith("Z") and page["last_edited_time"].endswith("Z")
    # Every schema property is present, empty ones included.
    assert page["properties"]["Name"] == {"id": "title", "type": "title", "title": []}
    assert page["properties"]["Reviewed"]["checkbox"] is False
    assert page["properties"]["Date"]["date"] is None
    assert page["request_id"]


def test_page_under_a_page_and_under_a_database_id(client: Client, notion: NotionState):
    child = client.pages.create(
        parent={"page_id": SANDBOX_ROOT_PAGE_ID},
        properties={"title": [{"text": {"content": "메모"}}]},
    )
    in_db = client.pages.create(parent={"database_id": SANDBOX_DIGEST_DATABASE_ID}, properties={})

    assert child["parent"] == {"type": "page_id", "page_id": SANDBOX_ROOT_PAGE_ID}
    assert child["properties"]["title"]["title"][0]["plain_text"] == "메모"
    assert in_db["parent"]["data_source_id"] == DS
    assert [p["id"] for p in notion.pages(DS)] == [in_db["id"]]


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"Colour": {"rich_text": []}}, "Colour is not a property that exists."),
        ({"Responses": {"rich_text": []}}, "Responses is expected to be number."),
        ({"Responses": {"number": "12"}}, "Responses is expected to be number."),
        ({"Reviewed": {"checkbox": "yes"}}, "Reviewed is expected to be checkbox."),
        ({"Date": {"date": {"start": "24/11/2025"}}}, "should be an ISO 8601 date"),
    ],
)
def test_invalid_properties_are_refused_and_nothing_is_stored(
    client: Client, notion: NotionState, properties: dict[str, Any], message: str
):
    with pytest.raises(APIResponseError) as refused:
        client.pages.create(parent={"data_source_id": DS}, properties=properties)

    assert refused.value.status == 400
    assert refused.value.code == "validation_error"
    assert message in str(refused.value)
    assert notion.pages(DS) == []


def test_more_than_100_children_are_refused(client: Client, notion: NotionState):
    page = client.pages.create(parent={"data_source_id": DS}, properties={})

    with pytest.raises(APIResponseError) as on_append:
        client.blocks.children.append(page["id"], children=[paragraph("x")] * 101)
    with pytest.raises(APIResponseError) as on_create:
        client.pages.create(
            parent={"data_source_id": DS}, properties={}, children=[divider()] * 101
        )

    for refused in (on_append, on_create):
        assert refused.value.status == 400
        assert refused.value.code == "validation_error"
        assert "body.children.length should be ≤ `100`, instead was `101`." in str(refused.value)
    assert notion.children(page["id"]) == []
    assert len(notion.pages(DS)) == 1
    appended = client.blocks.children.append(page["id"], children=[paragraph("x")] * 100)
    assert len(appended["results"]) == 100


def divider() -> dict[str, Any]:
    return {"type": "divider", "divider": {}}


def test_text_longer_than_2000_units_is_refused(client: Client):
    page = client.pages.create(parent={"data_source_id": DS}, properties={})
    # 1,000 emoji are 2,000 UTF-16 units (accepted); one more character is too many.
    client.blocks.children.append(page["id"], children=[paragraph("😀" * 1000)])

    with pytest.raises(APIResponseError, match=r"content.length should be ≤ `2000`"):
        client.blocks.children.append(page["id"], children=[paragraph("😀" * 1000 + "a")])


def test_append_in_order_after_a_block_and_list_with_cursor(client: Client, notion: NotionState):
    page = client.pages.create(parent={"data_source_id": DS}, properties={})
    first = client.blocks.children.append(page["id"], children=[paragraph("1"), paragraph("3")])
    client.blocks.children.append(
        page["id"], children=[paragraph("2")], after=first["results"][0]["id"]
    )
    client.blocks.children.append(page["id"], children=[paragraph("0")], position={"type": "start"})

    listed = client.blocks.children.list(page["id"], page_size=3)
    rest = client.blocks.children.list(page["id"], start_cursor=listed["next_cursor"])

    texts = [b["paragraph"]["rich_text"][0]["plain_text"] for b in listed["results"]]
    assert texts == ["0", "1", "2"]
    assert listed["has_more"] is True
    assert [b["paragraph"]["rich_text"][0]["plain_text"] for b in rest["results"]] == ["3"]
    assert rest["has_more"] is False and rest["next_cursor"] is None
    assert [b["type"] for b in notion.children(page["id"])] == ["paragraph"] * 4


def test_table_rows_are_stored_as_children_of_the_table(client: Client, notion: NotionState):
    page = client.pages.create(parent={"data_source_id": DS}, properties={})
    row = {"type": "table_row", "table_row": {"cells": [[{"text": {"content": "양식"}}], []]}}
    table = {"type": "table", "table": {"table_width": 2, "has_column_header": True,
                                        "children": [row, row]}}  # fmt: skip

    [stored] = client.blocks.children.append(page["id"], children=[table])["results"]

    assert stored["type"] == "table" and stored["has_children"] is True
    rows = client.blocks.children.list(stored["id"])["results"]
    assert [r["table_row"]["cells"][0][0]["plain_text"] for r in rows] == ["양식", "양식"]
    assert len(notion.children(page["id"])[0]["children"]) == 2
    bad = {"type": "table", "table": {"table_width": 3, "children": [row]}}
    with pytest.raises(APIResponseError, match="table_row with 3 cells"):
        client.blocks.children.append(page["id"], children=[bad])


def test_update_properties_and_trash(client: Client, notion: NotionState):
    page = client.pages.create(
        parent={"data_source_id": DS}, properties={"Name": {"title": [{"text": {"content": "a"}}]}}
    )

    updated = client.pages.update(
        page["id"],
        properties={"Status": {"select": {"name": "Done"}}, "Reviewed": {"checkbox": True}},
    )
    assert updated["properties"]["Status"]["select"]["name"] == "Done"
    assert updated["properties"]["Name"]["title"][0]["plain_text"] == "a"

    trashed = client.pages.update(page["id"], in_trash=True)
    assert trashed["in_trash"] is True and trashed["archived"] is True
    assert client.data_sources.query(DS)["results"] == []
    assert notion.pages(DS) == [] and len(notion.pages(DS, include_trashed=True)) == 1
    with pytest.raises(APIResponseError, match="archived"):
        client.blocks.children.append(page["id"], children=[paragraph("x")])
    restored = client.pages.update(page["id"], in_trash=False)
    assert restored["in_trash"] is False
    with pytest.raises(APIResponseError, match="Invalid select option"):
        client.pages.update(page["id"], properties={"Status": {"select": {"id": "missing"}}})


# -- queries ----------------------------------------------------------------------------------


@pytest.fixture
def seeded(notion: NotionState) -> None:
    rows = [
        ("설문 A", "만족도", 12, "2025-11-20", True, "New", "k-1"),
        ("설문 B", "만족도", 3, "2025-11-24", False, "Done", ""),
        ("Survey C", "NPS", 40, "2025-11-25T09:30:00+09:00", False, "New", "k-3"),
        ("Survey D", "NPS", None, None, True, None, ""),
    ]
    start = datetime(2025, 11, 1, tzinfo=UTC)
    for i, (name, form, responses, day, reviewed, status, key) in enumerate(rows):
        notion.add_page(
            data_source_id=DS,
            properties={"Name": name, "Form": form, "Responses": responses, "Date": day,
                        "Reviewed": reviewed, "Status": status, "moltbot key": key},
            created_time=start + timedelta(days=i),
        )  # fmt: skip


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(
    ("query_filter", "expected"),
    [
        ({"property": "Name", "title": {"equals": "설문 A"}}, ["설문 A"]),
        ({"property": "Name", "title": {"contains": "survey"}}, ["Survey C", "Survey D"]),
        ({"property": "Name", "rich_text": {"starts_with": "설문"}}, ["설문 A", "설문 B"]),
        ({"property": "moltbot key", "rich_text": {"equals": "k-3"}}, ["Survey C"]),
        ({"property": "moltbot key", "rich_text": {"is_empty": True}}, ["설문 B", "Survey D"]),
        ({"property": "Form", "select": {"equals": "만족도"}}, ["설문 A", "설문 B"]),
        ({"property": "Status", "select": {"is_empty": True}}, ["Survey D"]),
        ({"property": "Responses", "number": {"greater_than": 10}}, ["설문 A", "Survey C"]),
        ({"property": "Responses", "number": {"less_than_or_equal_to": 12}}, ["설문 A", "설문 B"]),
        ({"property": "Responses", "number": {"is_empty": True}}, ["Survey D"]),
        ({"property": "Date", "date": {"on_or_after": "2025-11-24"}}, ["설문 B", "Survey C"]),
        ({"property": "Date", "date": {"before": "2025-11-24"}}, ["설문 A"]),
        ({"property": "Date", "date": {"equals": "2025-11-25"}}, ["Survey C"]),
        ({"property": "Reviewed", "checkbox": {"equals": True}}, ["설문 A", "Survey D"]),
        ({"timestamp": "created_time", "created_time": {"after": "2025-11-02"}},
         ["Survey C", "Survey D"]),
        (
            {"and": [{"property": "Form", "select": {"equals": "NPS"}},
                     {"or": [{"property": "Reviewed", "checkbox": {"equals": True}},
                             {"property": "Responses", "number": {"equals": 40}}]}]},
            ["Survey C", "Survey D"],
        ),
        (
            {"or": [{"property": "Name", "title": {"ends_with": "A"}},
                    {"property": "Status", "select": {"equals": "Done"}}]},
            ["설문 A", "설문 B"],
        ),
    ],
)  # fmt: skip
def test_query_filters(client: Client, query_filter: dict[str, Any], expected: list[str]):
    assert names(client.data_sources.query(DS, filter=query_filter)) == expected


@pytest.mark.usefixtures("seeded")
def test_query_sorts(client: Client):
    by_responses = client.data_sources.query(
        DS, sorts=[{"property": "Responses", "direction": "descending"}]
    )
    by_form_then_newest = client.data_sources.query(
        DS,
        sorts=[
            {"property": "Form", "direction": "ascending"},
            {"timestamp": "created_time", "direction": "descending"},
        ],
    )

    # Empty values go last whatever the direction.
    assert names(by_responses) == ["Survey C", "설문 A", "설문 B", "Survey D"]
    assert names(by_form_then_newest) == ["설문 B", "설문 A", "Survey D", "Survey C"]


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"filter": {"property": "Colour", "select": {"equals": "x"}}}, "Colour"),
        ({"filter": {"property": "Responses", "rich_text": {"equals": "x"}}}, "Responses"),
        ({"filter": {"property": "Responses", "number": {"contains": 1}}}, "contains"),
        ({"sorts": [{"property": "Colour", "direction": "ascending"}]}, "Colour"),
        ({"page_size": 101}, "body.page_size should be ≤ `100`, instead was `101`."),
        ({"start_cursor": "not-a-cursor"}, "start_cursor"),
    ],
)
def test_bad_queries_are_refused(raw: httpx.Client, body: dict[str, Any], message: str):
    response = raw.post(f"/v1/data_sources/{DS}/query", json=body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert message in response.json()["message"]


def test_pagination_over_150_pages(client: Client, notion: NotionState):
    for i in range(150):
        notion.add_page(data_source_id=DS, properties={"Name": f"응답 {i:03d}", "Responses": i})

    first = client.data_sources.query(DS, page_size=100)
    second = client.data_sources.query(DS, page_size=100, start_cursor=first["next_cursor"])
    everything = collect_paginated_api(client.data_sources.query, data_source_id=DS)

    assert len(first["results"]) == 100 and first["has_more"] is True
    assert len(second["results"]) == 50 and second["has_more"] is False
    assert second["next_cursor"] is None
    assert names({"results": everything}) == [f"응답 {i:03d}" for i in range(150)]
    # Two pages by hand, two more through the helper (default page size is 100 too).
    assert len(notion.core.requests_to("POST", r"/query$")) == 4


# -- protocol: auth, version, routes, errors ---------------------------------------------------


def test_wrong_token_is_401_unauthorized(sandbox: Sandbox, notion: NotionState):
    wrong = Client(auth="secret_wrong", base_url=f"{sandbox.base_url}/notion", retry=False)

    with pytest.raises(APIResponseError) as refused:
        wrong.users.me()

    assert refused.value.status == 401
    assert refused.value.code == "unauthorized"
    assert [(r.method, r.path, r.status) for r in notion.core.requests] == [
        ("GET", "/v1/users/me", 401)
    ]


@pytest.mark.parametrize("version", [None, "2022-06-28"])
def test_missing_or_old_notion_version_is_refused(sandbox: Sandbox, version: str | None):
    headers = {"Authorization": f"Bearer {SANDBOX_NOTION_TOKEN}"}
    if version:
        headers["Notion-Version"] = version

    response = httpx.get(f"{sandbox.base_url}/notion/v1/users/me", headers=headers)

    assert response.status_code == 400
    body = response.json()
    assert body["object"] == "error" and body["code"] == "invalid_request"
    assert "Notion-Version" in body["message"] and NOTION_VERSION in body["message"]


def test_an_older_client_version_fails_loudly(sandbox: Sandbox):
    old = Client(
        auth=SANDBOX_NOTION_TOKEN,
        base_url=f"{sandbox.base_url}/notion",
        notion_version="2022-06-28",
        retry=False,
    )

    with pytest.raises(APIResponseError, match="Notion-Version"):
        old.databases.retrieve(SANDBOX_DIGEST_DATABASE_ID)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing/here", 400, "invalid_request_url"),
        ("DELETE", "/v1/pages/" + SANDBOX_ROOT_PAGE_ID, 400, "invalid_request_url"),
        ("GET", "/v1/pages/00000000-0000-4000-8000-000000000000", 404, "object_not_found"),
        ("GET", "/v1/data_sources/00000000-0000-4000-8000-000000000000", 404, "object_not_found"),
        ("GET", "/v1/pages/not-a-uuid", 400, "validation_error"),
    ],
)
def test_unknown_routes_and_ids(raw: httpx.Client, method: str, path: str, status: int, code: str):
    response = raw.request(method, path)

    assert response.status_code == status
    body = response.json()
    assert (body["object"], body["status"], body["code"]) == ("error", status, code)
    assert body["request_id"]


def test_invalid_json_body(raw: httpx.Client):
    response = raw.post(
        "/v1/pages", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


def test_injected_faults_answer_in_notions_shape(client: Client, notion: NotionState):
    notion.core.inject_fault(503, path=r"^/v1/users/me$")

    with pytest.raises(APIResponseError) as failed:
        client.users.me()

    assert failed.value.status == 503
    assert failed.value.code == "service_unavailable"
    assert client.users.me()["type"] == "bot"
    assert [r.fault for r in notion.core.requests] == ["status", None]


def test_request_log_is_served_under_the_control_route(client: Client, raw: httpx.Client):
    client.users.me()

    logged = raw.get("/_sandbox/requests").json()

    assert [(r["method"], r["path"], r["status"]) for r in logged] == [("GET", "/v1/users/me", 200)]


# -- rate limit, after-apply faults, reset ------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(
    client: Client, raw: httpx.Client, notion: NotionState
):
    notion.set_rate_limit(rate=0.5, burst=2)
    assert raw.get("/v1/users/me").status_code == 200
    assert raw.get("/v1/users/me").status_code == 200

    limited = raw.get("/v1/users/me")

    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    with pytest.raises(APIResponseError) as refused:
        client.users.me()
    assert refused.value.code == "rate_limited"


def test_rate_limit_can_be_switched_off(raw: httpx.Client, notion: NotionState):
    notion.set_rate_limit(rate=None)

    statuses = {raw.get("/v1/users/me").status_code for _ in range(40)}

    assert statuses == {200}


def test_default_rate_limit_allows_a_burst_then_refuses(raw: httpx.Client):
    statuses = [raw.get("/v1/users/me").status_code for _ in range(30)]

    assert statuses[:20] == [200] * 20
    assert 429 in statuses[20:]


def test_fail_after_apply_stores_the_page_then_answers_500(client: Client, notion: NotionState):
    notion.fail_after_apply(1, method="POST", path=r"^/v1/pages$")

    with pytest.raises(APIResponseError) as failed:
        client.pages.create(parent={"data_source_id": DS}, properties={})

    assert failed.value.status == 500
    assert failed.value.code == "internal_server_error"
    assert len(notion.pages(DS)) == 1
    client.pages.create(parent={"data_source_id": DS}, properties={})
    assert len(notion.pages(DS)) == 2
    assert [r.status for r in notion.core.requests_to("POST", r"^/v1/pages$")] == [500, 200]


def test_fail_after_apply_can_drop_the_connection(client: Client, notion: NotionState):
    page = client.pages.create(parent={"data_source_id": DS}, properties={})
    notion.fail_after_apply(1, kind="drop", method="PATCH")

    with pytest.raises(httpx.TransportError):
        client.blocks.children.append(page["id"], children=[paragraph("once")])

    assert len(notion.children(page["id"])) == 1


def test_reset_restores_the_seeded_state(notion: NotionState, raw: httpx.Client):
    notion.add_database("임시", {"이름": "title"})
    notion.add_page(data_source_id=DS, properties={"Name": "x"})
    notion.set_rate_limit(rate=0.1, burst=1)
    notion.fail_after_apply(1)
    notion.core.inject_fault(500)
    raw.get("/v1/users/me")

    notion.reset()

    assert notion.pages(DS) == []
    assert notion.core.requests == [] and notion.core.pending_faults == []
    assert notion.database(SANDBOX_DIGEST_DATABASE_ID)["data_sources"][0]["id"] == DS
    assert [raw.get("/v1/users/me").status_code for _ in range(3)] == [200, 200, 200]
    with pytest.raises(NotionAPIError):
        notion.page("00000000-0000-4000-8000-000000000000")


def test_add_database_gives_a_queryable_data_source(client: Client, notion: NotionState):
    database_id, source_id = notion.add_database(
        "재고",
        {
            "품목": "title",
            "수량": {"number": {}},
            "상태": {"status": {"options": [{"name": "정상"}]}},
        },
    )
    notion.add_page(
        data_source_id=source_id, properties={"품목": "사과", "수량": 3, "상태": "정상"}
    )

    found = client.search(query="재고", filter={"property": "object", "value": "data_source"})
    rows = client.data_sources.query(
        source_id, filter={"property": "수량", "number": {"equals": 3}}
    )

    assert [s["id"] for s in found["results"]] == [source_id]
    assert client.databases.retrieve(database_id)["data_sources"][0]["id"] == source_id
    assert rows["results"][0]["properties"]["상태"]["status"]["name"] == "정상"
    with pytest.raises(NotionAPIError, match="exactly one title"):
        notion.add_database("bad", {"a": "number"})
