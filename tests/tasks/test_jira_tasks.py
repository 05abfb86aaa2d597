"""Jira tasks with the real `jira` client against the emulator: request counts, retries, dedup."""

from __future__ import annotations

import pytest

from blocks import JiraCredentials
from moltbot.errors import ServiceError
from moltbot.retrying import recorded_sleeps
from moltbot.sandbox import Sandbox
from moltbot.sandbox.jira import JiraState
from moltbot.sandbox.kit import EmulatorCore
from tasks.jira import (
    comment_on_issue,
    create_issues_in_bulk,
    dedup_label,
    find_comment_by_marker,
    find_issues,
    move_issue,
    store_issue_property,
)
from tests.sandbox.helpers import jira_block

BLOCK = "sandbox-jira"


@pytest.fixture
def state(sandbox: Sandbox) -> JiraState:
    return sandbox.state.jira


def draft(n: int, *, labelled: bool = True, **fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "project": "OPS",
        "issuetype": "Task",
        "summary": f"주문 {n} 배송 지연 확인",
        "priority": "Medium",
    }
    if labelled:
        values["labels"] = ["배송", dedup_label(f"test:{n}")]
    return values | fields


def seed(state: JiraState, n: int, **fields: object) -> str:
    return state.create_issue(
        {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": f"이슈 {n}", **fields}
    )


def paths(core: EmulatorCore) -> list[tuple[str, str, int]]:
    return [(r.method, r.path.removeprefix("/rest/api/2/"), r.status) for r in core.requests]


def test_250_drafts_in_5_bulk_requests_with_one_refused(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    drafts = [draft(n) for n in range(250)]
    drafts[137]["priority"] = "Urgent"

    result = create_issues_in_bulk(jira_credentials, drafts, block_name=BLOCK)

    assert paths(state.core) == [("POST", "issue/bulk", 201)] * 5  # building the client: none
    assert len(result.created) == 249 and 137 not in result.created
    [failure] = result.failures
    assert failure.index == 137
    assert failure.errors == {"priority": "The priority selected is invalid."}
    assert failure.message == (
        "Jira block 'sandbox-jira': draft 137 refused: priority: The priority selected is invalid."
    )
    assert not failure.outcome_unknown
    issues = state.issues()
    assert len(issues) == 249
    assert issues[0].summary == "주문 0 배송 지연 확인"
    assert result.created[249] == issues[-1].key == "OPS-249"


def test_search_follows_every_page(jira_credentials: JiraCredentials, state: JiraState) -> None:
    keys = [seed(state, n, labels=["배송"]) for n in range(230)]
    state.core.clear_requests()

    found = find_issues(jira_credentials, "project = OPS ORDER BY created ASC", block_name=BLOCK)

    assert [issue["key"] for issue in found] == keys
    assert set(found[0]["fields"]) == {"summary", "labels", "status", "created"}
    assert found[0]["fields"]["status"]["name"] == "To Do"
    # Fields named by id need no `GET field` for translation, and the client sends nothing else.
    assert paths(state.core) == [("GET", "search/jql", 200)] * 3


def test_a_field_named_by_name_reads_the_field_list_once_per_client(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    keys = [seed(state, n, labels=["배송"]) for n in range(3)]
    state.core.clear_requests()

    def search(*fields: str) -> list[dict]:
        return find_issues(jira_credentials, "labels = 배송", fields=fields, block_name=BLOCK)

    by_name = search("type")  # a JQL clause name, not an id: translated to `issuetype`
    by_id = search("issuetype", "-comment", "customfield_10016")
    again = search("type")

    assert [issue["key"] for issue in by_name] == keys
    assert set(by_name[0]["fields"]) == set(by_id[0]["fields"]) == {"issuetype"}
    assert by_name[0]["fields"]["issuetype"]["name"] == "Task"
    assert again == by_name
    assert [(m, p) for m, p, _ in paths(state.core)] == [
        ("GET", "field"),  # the client's translation table, read once for this block
        ("GET", "search/jql"),
        ("GET", "search/jql"),
        ("GET", "search/jql"),
    ]


def test_a_404_from_the_search_on_a_cloud_site_stays_jiras_answer(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    # search/jql exists on Cloud only: a 404 makes the task ask serverInfo (once) whether the
    # site is Server or Data Center; a Cloud site keeps its own answer.
    state.core.inject_fault(404, path="search/jql$", message="Not here")

    with pytest.raises(ServiceError) as raised:
        find_issues(jira_credentials, "labels = x", block_name=BLOCK)

    assert str(raised.value) == "Jira block 'sandbox-jira': 404 Not here"
    assert not raised.value.transient
    assert [(m, p) for m, p, _ in paths(state.core)] == [
        ("GET", "search/jql"),
        ("GET", "serverInfo"),
    ]


def test_search_by_label_key_and_korean_text(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    first = seed(state, 1, labels=["환불"], description="고객 환불 요청 처리")
    second = seed(state, 2, labels=["배송"])
    seed(state, 3, labels=["배송"], summary="택배 분실")

    def keys(jql: str) -> list[str]:
        return [
            i["key"]
            for i in find_issues(jira_credentials, jql, fields=("summary",), block_name=BLOCK)
        ]

    assert keys("labels = 환불") == [first]
    assert keys(f"key in ({second}, {first}) ORDER BY key DESC") == [second, first]
    assert keys('project = OPS AND text ~ "환불 요청"') == [first]
    assert keys('labels = 배송 AND summary ~ "분실"') == ["OPS-3"]


def test_a_refused_query_fails_at_once_with_jiras_message(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    with pytest.raises(ServiceError) as raised:
        find_issues(jira_credentials, "project = OPS OR labels = x", block_name=BLOCK)

    assert str(raised.value).startswith("Jira block 'sandbox-jira': 400 Error in the JQL Query:")
    assert not raised.value.transient
    assert state.core.count("GET", "search/jql$") == 1


def test_500_on_a_search_is_retried(jira_credentials: JiraCredentials, state: JiraState) -> None:
    for n in range(150):
        seed(state, n)
    state.core.inject_fault(500, path="search/jql$")

    found = find_issues(jira_credentials, "project = OPS", fields=("summary",), block_name=BLOCK)

    assert len(found) == 150
    assert [s for _, p, s in paths(state.core) if p == "search/jql"] == [500, 200, 200]


def test_429_with_retry_after_is_honoured_once(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    state.core.inject_fault(429, path="issue/bulk$", retry_after=1)

    with recorded_sleeps() as waits:
        result = create_issues_in_bulk(
            jira_credentials, [draft(n) for n in range(3)], block_name=BLOCK
        )

    assert waits == [1.0]
    assert result.ok and result.keys == ["OPS-1", "OPS-2", "OPS-3"]
    # Jira applies nothing on 429, so no label search before the one re-send.
    assert paths(state.core) == [("POST", "issue/bulk", 429), ("POST", "issue/bulk", 201)]


def test_chunk_applied_then_500_is_not_duplicated(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    state.fail_after_apply(1)
    drafts = [draft(n) for n in range(60)]

    result = create_issues_in_bulk(jira_credentials, drafts, block_name=BLOCK)

    assert result.ok
    assert len(state.issues()) == 60  # not 110
    assert result.created[0] == "OPS-1" and result.created[59] == "OPS-60"
    assert paths(state.core) == [
        ("POST", "issue/bulk", 500),  # chunk 1: created, answer lost
        ("GET", "search/jql", 200),  # labels in (…): all 50 found, nothing re-sent
        ("POST", "issue/bulk", 201),  # chunk 2
    ]


def test_chunk_that_times_out_after_applying_is_not_duplicated(
    sandbox: Sandbox, state: JiraState
) -> None:
    block = jira_block(sandbox.base_url, timeout_seconds=0.3)
    state.fail_after_apply(1, kind="hang", seconds=0.6)

    result = create_issues_in_bulk(block, [draft(n) for n in range(3)], block_name=BLOCK)

    assert result.ok and result.keys == ["OPS-1", "OPS-2", "OPS-3"]
    assert len(state.issues()) == 3


def test_chunk_lost_before_reaching_jira_is_resent(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    state.core.inject_fault(kind="drop", path="issue/bulk$")

    result = create_issues_in_bulk(jira_credentials, [draft(n) for n in range(5)], block_name=BLOCK)

    assert result.ok and len(state.issues()) == 5
    assert [(m, p) for m, p, _ in paths(state.core)] == [
        ("POST", "issue/bulk"),
        ("GET", "search/jql"),  # nothing found
        ("POST", "issue/bulk"),
    ]


def test_partly_applied_chunk_resends_only_the_missing(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    drafts = [draft(n) for n in range(4)]
    # As if an earlier, interrupted run had created drafts 1 and 3 already.
    for n in (1, 3):
        seed(state, n, labels=drafts[n]["labels"])
    state.core.inject_fault(503, path="issue/bulk$")

    result = create_issues_in_bulk(jira_credentials, drafts, block_name=BLOCK)

    assert result.created == {0: "OPS-3", 1: "OPS-1", 2: "OPS-4", 3: "OPS-2"}
    assert len(state.issues()) == 4


def test_without_dedup_labels_an_ambiguous_chunk_is_reported_not_resent(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    state.fail_after_apply(1)

    result = create_issues_in_bulk(
        jira_credentials, [draft(n, labelled=False) for n in range(3)], block_name=BLOCK
    )

    assert result.created == {}
    assert [f.index for f in result.failures] == [0, 1, 2]
    assert all(f.outcome_unknown for f in result.failures)
    assert "not re-sent" in result.failures[0].message
    assert state.core.count("POST", "issue/bulk$") == 1
    assert len(state.issues()) == 3  # they were created: reporting them as unknown was right


def test_comment_round_trip_and_no_duplicate_after_a_lost_answer(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    key = seed(state, 1)
    state.fail_after_apply(1, path="/comment$")

    comment = comment_on_issue(jira_credentials, key, "고객에게 안내 완료 ✅", block_name=BLOCK)

    assert comment["body"] == "고객에게 안내 완료 ✅"
    assert [c.body for c in state.issue(key).comments] == ["고객에게 안내 완료 ✅"]
    assert state.core.count("POST", "/comment$") == 1


def test_comment_on_a_missing_issue_fails_at_once(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    with pytest.raises(ServiceError) as raised:
        comment_on_issue(jira_credentials, "OPS-404", "x", block_name=BLOCK)

    assert str(raised.value) == (
        "Jira block 'sandbox-jira': 404 Issue does not exist or you do not have permission to "
        "see it."
    )
    assert state.core.count("POST", "/comment$") == 1


def marked(marker: str, key: str = "moltbot") -> list[dict[str, object]]:
    return [{"key": key, "value": {"key": marker}}]


def comment_pages(core: EmulatorCore) -> list[tuple[str, int]]:
    """Query and status of each comment listing (``startAt=…&maxResults=…``)."""
    return [(r.query, r.status) for r in core.requests_to("GET", r"/comment$")]


def test_marked_comment_is_found_by_its_marker(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    key = seed(state, 1)
    state.add_comment(key, "사람이 남긴 댓글")

    comment = comment_on_issue(
        jira_credentials, key, "다시 발생 (2회째)", marker="ticket:evt-7:2", block_name=BLOCK
    )
    found = find_comment_by_marker(jira_credentials, key, "ticket:evt-7:2", block_name=BLOCK)

    assert found == comment["id"]
    assert state.issue(key).comments[1].properties == {"moltbot": {"key": "ticket:evt-7:2"}}
    # Found on the first page: no further page is read.
    assert [q for q, _ in comment_pages(state.core)] == [
        "expand=properties&startAt=0&maxResults=100&orderBy=created"
    ]


def test_unmarked_or_otherwise_marked_comments_are_not_found(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    key = seed(state, 1)
    state.add_comment(key, "표시 없음")
    state.add_comment(key, "다른 표시", properties=marked("ticket:evt-7:3"))
    state.add_comment(key, "다른 앱", properties=marked("ticket:evt-7:2", key="other-app"))
    state.add_comment(
        key, "값이 문자열", properties=[{"key": "moltbot", "value": "ticket:evt-7:2"}]
    )
    state.core.clear_requests()

    found = find_comment_by_marker(jira_credentials, key, "ticket:evt-7:2", block_name=BLOCK)

    assert found is None
    # Only an empty page proves the end (Jira may answer fewer comments than asked for).
    assert [q.split("&")[1] for q, _ in comment_pages(state.core)] == ["startAt=0", "startAt=4"]


def test_lookup_reads_every_page_and_returns_the_oldest_match(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    key = seed(state, 1)
    ids = [
        state.add_comment(key, f"댓글 {n}", properties=marked(f"m{n % 115}")) for n in range(120)
    ]
    client = jira_credentials.get_client(block_name=BLOCK)
    state.core.clear_requests()

    late = find_comment_by_marker(jira_credentials, key, "m3", block_name=BLOCK, client=client)
    last = find_comment_by_marker(jira_credentials, key, "m114", block_name=BLOCK, client=client)
    missing = find_comment_by_marker(jira_credentials, key, "m999", block_name=BLOCK, client=client)

    assert late == ids[3]  # not ids[118], which carries the same marker
    assert (last, missing) == (ids[114], None)
    starts = [q.split("&")[1] for q, _ in comment_pages(state.core)]
    assert starts == ["startAt=0"] + ["startAt=0", "startAt=100"] * 2 + ["startAt=120"]
    assert state.core.count("GET", "serverInfo$") == 0
    assert jira_credentials.get_client() is client  # one client per block


def test_a_429_on_the_lookup_is_retried(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    key = seed(state, 1)
    wanted = state.add_comment(key, "재발", properties=marked("ticket:evt-7:2"))
    # Retry-After: 0 keeps the test from waiting; the wait itself is the retry policy's.
    state.core.inject_fault(429, method="GET", path="/comment$", retry_after=0)

    found = find_comment_by_marker(jira_credentials, key, "ticket:evt-7:2", block_name=BLOCK)

    assert found == wanted
    assert [status for _, status in comment_pages(state.core)] == [429, 200]


def test_lookup_on_a_missing_issue_fails_at_once(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    with pytest.raises(ServiceError) as raised:
        find_comment_by_marker(jira_credentials, "OPS-404", "x", block_name=BLOCK)

    assert not raised.value.transient
    assert "404 Issue does not exist" in str(raised.value)
    assert len(comment_pages(state.core)) == 1


def test_marked_comment_applied_then_500_is_found_by_marker_not_duplicated(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    key = seed(state, 1)
    # An identical body from an earlier occurrence: only the marker tells the two apart.
    state.add_comment(key, "다시 발생", properties=marked("ticket:evt-7:2"))
    state.fail_after_apply(1, path="/comment$")

    comment = comment_on_issue(
        jira_credentials, key, "다시 발생", marker="ticket:evt-7:3", block_name=BLOCK
    )

    comments = state.issue(key).comments
    assert [c.properties["moltbot"]["key"] for c in comments] == [
        "ticket:evt-7:2",
        "ticket:evt-7:3",
    ]
    assert comment["id"] == comments[1].id
    assert [(m, s) for m, p, s in paths(state.core) if p.endswith("/comment")] == [
        ("POST", 500),
        ("GET", 200),
    ]


def test_move_issue_through_the_workflow(
    jira_credentials: JiraCredentials, state: JiraState
) -> None:
    key = seed(state, 1)

    assert move_issue(jira_credentials, key, "In Progress", block_name=BLOCK) == "In Progress"
    assert move_issue(jira_credentials, key, "done", block_name=BLOCK) == "Done"
    assert move_issue(jira_credentials, key, "Done", block_name=BLOCK) == "Done"  # already there
    assert state.issue(key).status == "Done"


def test_issue_property_round_trip(jira_credentials: JiraCredentials, state: JiraState) -> None:
    key = seed(state, 1)

    store_issue_property(
        jira_credentials, key, "moltbot", {"자동화": "주문 알림", "run": 1}, block_name=BLOCK
    )

    assert state.issue(key).properties == {"moltbot": {"자동화": "주문 알림", "run": 1}}
