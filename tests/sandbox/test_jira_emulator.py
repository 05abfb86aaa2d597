"""Jira Cloud emulator, driven by the real `jira` client (and httpx for the raw wire format)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from jira import JIRA, JIRAError

from moltbot.sandbox import Sandbox
from moltbot.sandbox.jira import (
    DEFAULT_COMMENT_PAGE_SIZE,
    MAX_BULK_ISSUES,
    SANDBOX_JIRA_ACCOUNT_ID,
    SANDBOX_JIRA_EMAIL,
    SANDBOX_JIRA_TOKEN,
    SEARCH_REMOVED,
    JiraApiError,
    JiraState,
    parse_jql,
)

AUTH = (SANDBOX_JIRA_EMAIL, SANDBOX_JIRA_TOKEN)
API = "/jira/rest/api/2"


@pytest.fixture
def state(sandbox: Sandbox) -> JiraState:
    """The session sandbox's Jira state (conftest.py resets it around each test)."""
    return sandbox.state.jira


@pytest.fixture
def jira(sandbox: Sandbox) -> Iterator[JIRA]:
    client = JIRA(server=f"{sandbox.base_url}/jira", basic_auth=AUTH, max_retries=0, timeout=5)
    sandbox.state.jira.core.clear_requests()  # the constructor's serverInfo
    yield client
    client.close()


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sandbox.base_url}{API}", auth=AUTH, timeout=5) as client:
        yield client


def new_issue(state: JiraState, summary: str = "작업", **fields: object) -> str:
    return state.create_issue(
        {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": summary, **fields}
    )


def test_constructor_sees_jira_cloud_with_one_request(sandbox: Sandbox, state: JiraState) -> None:
    client = JIRA(server=f"{sandbox.base_url}/jira", basic_auth=AUTH, max_retries=0)

    assert client.deploymentType == "Cloud"
    assert [(r.method, r.path, r.status) for r in state.core.requests] == [
        ("GET", "/rest/api/2/serverInfo", 200)
    ]


def test_seeded_site(jira: JIRA, state: JiraState) -> None:
    project = jira.project("OPS")

    assert (project.id, project.key, project.name) == ("10000", "OPS", "Operations")
    assert [t.name for t in project.issueTypes] == ["Task", "Bug", "Incident"]
    assert [c.name for c in jira.project_components("OPS")] == ["Payments", "Web", "Support"]
    assert [p.name for p in jira.priorities()] == ["Highest", "High", "Medium", "Low", "Lowest"]
    assert jira.myself()["accountId"] == SANDBOX_JIRA_ACCOUNT_ID
    assert state.user_by_name("김민지").account_id in {u.account_id for u in state.users}
    assert {"summary", "labels", "created"} <= {f["id"] for f in jira.fields()}


def test_korean_issue_and_comment_round_trip(jira: JIRA, state: JiraState) -> None:
    assignee = state.user_by_name("김민지").account_id
    issue = jira.create_issue(
        fields={
            "project": {"key": "OPS"},
            "issuetype": {"name": "Incident"},
            "summary": "결제 실패 급증 — 카드사 응답 지연",
            "description": "오전 9시부터 결제 실패율 12%\n담당: 결제팀",
            "priority": {"name": "Highest"},
            "labels": ["결제", "moltbot-0123456789abcdef"],
            "components": [{"name": "Payments"}],
            "assignee": {"accountId": assignee},
        }
    )
    comment = jira.add_comment(issue.key, "원인 확인 중입니다 🙏")

    fetched = jira.issue(issue.key)
    assert fetched.fields.summary == "결제 실패 급증 — 카드사 응답 지연"
    assert fetched.fields.description == "오전 9시부터 결제 실패율 12%\n담당: 결제팀"
    assert fetched.fields.assignee.displayName == "김민지"
    assert (fetched.fields.status.name, fetched.fields.priority.name) == ("To Do", "Highest")
    assert [c.body for c in jira.comments(issue.key)] == ["원인 확인 중입니다 🙏"]
    assert comment.author.accountId == SANDBOX_JIRA_ACCOUNT_ID
    stored = state.issue(issue.key)
    assert stored.labels == ("결제", "moltbot-0123456789abcdef")
    assert (stored.issue_type, stored.components, stored.assignee) == (
        "Incident",
        ("Payments",),
        assignee,
    )
    assert [c.body for c in stored.comments] == ["원인 확인 중입니다 🙏"]
    # create_issue's prefetch reads the issue back once, then the test's own read.
    assert state.core.count("GET", r"/issue/OPS-1$") == 2


def test_comment_properties_are_stored_and_shown_only_when_expanded(
    jira: JIRA, http: httpx.Client, state: JiraState
) -> None:
    key = new_issue(state)
    marker = {"key": "ticket:evt-7:2", "메모": "재발"}

    created = http.post(
        f"/issue/{key}/comment",
        json={"body": "다시 발생", "properties": [{"key": "moltbot", "value": marker}]},
    )
    plain = http.get(f"/issue/{key}/comment").json()["comments"][0]
    expanded = jira.comments(key, expand="properties")[0]
    one = http.get(f"/issue/{key}/comment/{created.json()['id']}?expand=renderedBody,properties")

    assert created.status_code == 201
    assert "properties" not in created.json() and "properties" not in plain
    assert expanded.raw["properties"] == [{"key": "moltbot", "value": marker}]
    assert one.json()["properties"] == [{"key": "moltbot", "value": marker}]
    [stored] = state.issue(key).comments
    assert stored.properties == {"moltbot": marker}
    stored.properties["moltbot"]["key"] = "changed"  # a snapshot is a copy
    assert state.issue(key).comments[0].properties == {"moltbot": marker}


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ("moltbot", "Comment properties must be a list of objects with a 'key' and a 'value'."),
        ([{"key": "moltbot"}], "Comment properties must be a list"),
        ([{"value": 1}], "Comment properties must be a list"),
        ([{"key": "k" * 256, "value": 1}], "can not be longer than 255 characters"),
        ([{"key": "big", "value": "x" * 32768}], "The property value is too long."),
    ],
)
def test_malformed_comment_properties_are_refused(
    http: httpx.Client, state: JiraState, properties: object, message: str
) -> None:
    key = new_issue(state)

    response = http.post(f"/issue/{key}/comment", json={"body": "x", "properties": properties})

    assert response.status_code == 400
    assert message in response.json()["errorMessages"][0]
    assert state.issue(key).comments == ()


def test_comments_page_with_start_at_max_results_and_order(
    jira: JIRA, http: httpx.Client, state: JiraState
) -> None:
    key = new_issue(state)
    ids = [state.add_comment(key, f"댓글 {n}") for n in range(7)]

    def page(**params: object) -> dict:
        response = http.get(f"/issue/{key}/comment", params=params)
        assert response.status_code == 200
        return response.json()

    first = page(maxResults=3)
    last = page(startAt=6, maxResults=3)
    everything = page()

    assert [c["id"] for c in first["comments"]] == ids[:3]
    assert (first["startAt"], first["maxResults"], first["total"]) == (0, 3, 7)
    assert [c["id"] for c in last["comments"]] == ids[6:]
    assert page(startAt=7)["comments"] == []
    assert len(everything["comments"]) == 7
    assert everything["maxResults"] == DEFAULT_COMMENT_PAGE_SIZE == 5000
    assert page(maxResults=100000)["maxResults"] == 5000
    assert [c["id"] for c in page(orderBy="-created", maxResults=2)["comments"]] == ids[:-3:-1]
    assert [c.id for c in jira.comments(key, start_at=2, max_results=2, order_by="+created")] == (
        ids[2:4]
    )
    assert http.get(f"/issue/{key}/comment", params={"orderBy": "updated"}).status_code == 400
    refused = http.get(f"/issue/{key}/comment", params={"maxResults": "many"})
    assert refused.status_code == 400
    assert refused.json()["errorMessages"] == ["'many' is not a valid value for maxResults."]


def test_create_answers_201_with_self_link_on_the_callers_host(
    http: httpx.Client, sandbox: Sandbox
) -> None:
    fields = {"project": {"key": "OPS"}, "issuetype": {"id": "10001"}, "summary": "x"}

    response = http.post("/issue", json={"fields": fields})

    assert response.status_code == 201
    assert response.json() == {
        "id": "10001",
        "key": "OPS-1",
        "self": f"{sandbox.base_url}{API}/issue/10001",
    }


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {},
            {
                "project": "Specify a valid project ID or key",
                "issuetype": "Specify an issue type",
                "summary": "You must specify a summary of the issue.",
            },
        ),
        ({"priority": {"name": "Urgent"}}, {"priority": "The priority selected is invalid."}),
        (
            {"priority": "High"},
            {"priority": "Specify the Priority (id or name) in the string format"},
        ),
        (
            {"components": [{"name": "Mobile"}]},
            {"components": "Component name 'Mobile' is not valid"},
        ),
        ({"assignee": {"accountId": "nobody"}}, {"assignee": "Specify a valid value for assignee"}),
        (
            {"labels": ["two words"]},
            {"labels": "The label 'two words' contains spaces which is invalid."},
        ),
        (
            {"customfield_10099": "x"},
            {
                "customfield_10099": "Field 'customfield_10099' cannot be set. "
                "It is not on the appropriate screen, or unknown."
            },
        ),
        ({"issuetype": {"name": "Epic"}}, {"issuetype": "The issue type selected is invalid."}),
    ],
)
def test_create_refuses_bad_fields_with_jiras_errors(
    http: httpx.Client, state: JiraState, fields: dict, errors: dict
) -> None:
    base = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "요약"}
    body = base | fields if fields else {}

    response = http.post("/issue", json={"fields": body})

    assert response.status_code == 400
    assert response.json() == {"errorMessages": [], "errors": errors}
    assert state.issues() == []


def test_bulk_reports_item_errors_and_creates_the_rest(jira: JIRA, state: JiraState) -> None:
    drafts = [
        {"project": {"key": "OPS"}, "issuetype": {"name": "Bug"}, "summary": f"버그 {n}"}
        for n in range(3)
    ]
    drafts[1]["priority"] = {"name": "Urgent"}

    results = jira.create_issues(drafts, prefetch=False)

    assert [r["status"] for r in results] == ["Success", "Error", "Success"]
    assert results[1]["error"] == {"priority": "The priority selected is invalid."}
    assert [r["issue"].key for r in results if r["issue"]] == ["OPS-1", "OPS-2"]
    assert [i.summary for i in state.issues()] == ["버그 0", "버그 2"]
    assert state.core.count("POST", "/issue/bulk$") == 1


def test_bulk_wire_format(http: httpx.Client) -> None:
    good = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "ok"}
    bad = {**good, "summary": ""}

    partly = http.post("/issue/bulk", json={"issueUpdates": [{"fields": bad}, {"fields": good}]})
    none = http.post("/issue/bulk", json={"issueUpdates": [{"fields": bad}]})
    too_many = http.post("/issue/bulk", json={"issueUpdates": [{"fields": good}] * 51})

    assert partly.status_code == 201
    assert partly.json()["issues"][0]["key"] == "OPS-1"
    assert partly.json()["errors"] == [
        {
            "status": 400,
            "elementErrors": {
                "errorMessages": [],
                "errors": {"summary": "You must specify a summary of the issue."},
            },
            "failedElementNumber": 0,
        }
    ]
    assert none.status_code == 400
    assert none.json()["issues"] == []
    assert too_many.status_code == 400
    assert str(MAX_BULK_ISSUES) in too_many.json()["errorMessages"][0]


def test_search_by_label_key_status_and_korean_text(jira: JIRA, state: JiraState) -> None:
    first = new_issue(state, "서버 점검 안내", labels=["ops", "moltbot-aaaa"])
    second = new_issue(state, "Payment retry", labels=["billing"], description="결제 재시도 로직")
    third = new_issue(state, "Web 장애", labels=["ops"])
    state.create_issue(
        {"project": {"key": "OPS"}, "issuetype": {"name": "Bug"}, "summary": "Bug only"}
    )
    jira.add_comment(third, "고객 문의 다수: 로그인 불가")
    jira.transition_issue(second, "In Progress")

    def keys(jql: str) -> list[str]:
        return [i.key for i in jira.search_issues(jql, maxResults=False, fields="summary")]

    assert keys("labels = ops") == [first, third]
    assert keys("labels in (billing, moltbot-aaaa) ORDER BY created DESC") == [second, first]
    assert keys(f"key in ({third}, {first})") == [first, third]
    assert keys('status = "In Progress"') == [second]
    assert keys('project = OPS AND status in ("To Do", Done) AND labels = ops') == [first, third]
    assert keys('text ~ "결제"') == [second]
    assert keys('text ~ "로그인"') == [third]  # comments count for text ~
    assert keys('summary ~ "서버 점검"') == [first]
    assert keys("issuetype = Bug AND labels != ops") == []
    assert keys("project = OPS AND labels not in (ops)") == [second]


def test_search_pages_with_next_page_token(jira: JIRA, state: JiraState) -> None:
    keys = [new_issue(state, f"요약 {n}") for n in range(250)]
    state.core.clear_requests()

    found = jira.search_issues("project = OPS ORDER BY created", maxResults=False, fields="summary")

    assert [i.key for i in found] == keys
    assert found[249].fields.summary == "요약 249"
    searches = state.core.requests_to("GET", "/search/jql$")
    assert len(searches) == 3  # 100 + 100 + 50
    assert [("nextPageToken" in s.query) for s in searches] == [False, True, True]
    assert state.core.count("GET", "/field$") == 1


def test_search_page_size_is_capped_at_100(http: httpx.Client, state: JiraState) -> None:
    for n in range(120):
        new_issue(state, f"s{n}")

    page = http.get("/search/jql", params={"jql": "project = OPS", "maxResults": 500}).json()
    rest = http.get(
        "/search/jql",
        params={"jql": "project = OPS", "nextPageToken": page["nextPageToken"], "fields": "key"},
    ).json()

    assert (len(page["issues"]), page["isLast"]) == (100, False)
    assert (len(rest["issues"]), rest["isLast"], "nextPageToken" in rest) == (20, True, False)
    assert "fields" not in page["issues"][0]  # search/jql returns ids only unless asked


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("project = OPS OR labels = x", "the moltbot sandbox does not support 'OR'"),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("statuss = Done", "Field 'statuss' does not exist or you do not have permission"),
        ("labels ~ ops", "The operator '~' is not supported by the 'labels' field."),
        ("summary = x", "The operator '=' is not supported by the 'summary' field."),
        ("key in (OPS-99)", "An issue with key 'OPS-99' does not exist for field 'key'."),
        ("labels = ", "Expecting either a value, list or function before the end of the query."),
        ('labels = "open', "The quoted string 'open' has not been completed."),
        ("ORDER BY created", "Unbounded JQL queries are not allowed here."),
        ("project = OPS ORDER BY summary", "Not able to sort using field 'summary'."),
    ],
)
def test_refused_jql_answers_400_with_jiras_message(jira: JIRA, jql: str, message: str) -> None:
    with pytest.raises(JIRAError) as raised:
        jira.search_issues(jql)

    assert raised.value.status_code == 400
    assert message in raised.value.text


def test_parse_jql_subset() -> None:
    query = parse_jql("project = 'OPS' AND labels IN (a, \"b c\") ORDER BY created DESC, key")

    assert [(c.field, c.operator, c.values) for c in query.clauses] == [
        ("project", "=", ("OPS",)),
        ("labels", "in", ("a", "b c")),
    ]
    assert query.order == (("created", True), ("key", False))
    with pytest.raises(JiraApiError):
        parse_jql("project = OPS AND (labels = a)")


def test_removed_search_answers_410_like_jira_cloud(sandbox: Sandbox, http: httpx.Client) -> None:
    # Without server info the client does not know it is on Cloud and calls the removed route.
    stale = JIRA(
        server=f"{sandbox.base_url}/jira", basic_auth=AUTH, max_retries=0, get_server_info=False
    )

    with pytest.raises(JIRAError) as raised:
        stale.search_issues("project = OPS")

    assert raised.value.status_code == 410
    assert raised.value.text == SEARCH_REMOVED
    assert http.post("/search", json={"jql": "project = OPS"}).status_code == 410


def test_transitions_follow_the_workflow(jira: JIRA, state: JiraState) -> None:
    key = new_issue(state)

    assert sorted(t["name"] for t in jira.transitions(key)) == ["Done", "In Progress"]
    jira.transition_issue(key, "In Progress")
    jira.transition_issue(key, "Done")

    assert state.issue(key).status == "Done"
    assert jira.issue(key).fields.resolution.name == "Done"
    with pytest.raises(JIRAError) as raised:
        jira.transition_issue(key, "31")  # already Done
    assert raised.value.status_code == 400


def test_entity_properties_round_trip(jira: JIRA, state: JiraState, http: httpx.Client) -> None:
    key = new_issue(state)
    value = {"run": "flow-run-1", "메모": "자동 생성", "rows": [1, 2]}

    created = jira.add_issue_property(key, "moltbot.origin", value)
    updated = jira.add_issue_property(key, "moltbot.origin", {**value, "rows": [3]})

    assert (created.status_code, updated.status_code) == (201, 200)
    assert jira.issue_property(key, "moltbot.origin").value.메모 == "자동 생성"
    assert state.issue(key).properties == {"moltbot.origin": {**value, "rows": [3]}}
    assert http.get(f"/issue/{key}/properties").json()["keys"][0]["key"] == "moltbot.origin"
    missing = http.get(f"/issue/{key}/properties/nope")
    assert missing.status_code == 404


def test_edit_issue_fields_and_labels(jira: JIRA, state: JiraState) -> None:
    key = new_issue(state, labels=["a"])

    jira.issue(key).update(fields={"summary": "바뀐 요약"}, update={"labels": [{"add": "b"}]})

    assert (state.issue(key).summary, state.issue(key).labels) == ("바뀐 요약", ("a", "b"))


def test_unknown_issue_is_404_in_jiras_words(http: httpx.Client) -> None:
    response = http.get("/issue/OPS-404")

    assert response.status_code == 404
    assert response.json() == {
        "errorMessages": ["Issue does not exist or you do not have permission to see it."],
        "errors": {},
    }


def test_wrong_or_missing_credentials_answer_401(sandbox: Sandbox, state: JiraState) -> None:
    base = f"{sandbox.base_url}{API}"

    wrong = httpx.get(f"{base}/serverInfo", auth=(SANDBOX_JIRA_EMAIL, "nope"), timeout=5)
    anonymous_info = httpx.get(f"{base}/serverInfo", timeout=5)
    anonymous = httpx.get(f"{base}/myself", timeout=5)

    assert wrong.status_code == 401
    assert wrong.json()["errorMessages"] == [
        "Client must be authenticated to access this resource."
    ]
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
    assert anonymous_info.status_code == 200  # as on Cloud
    assert anonymous.status_code == 401
    assert [r.status for r in state.core.requests] == [401, 200, 401]


def test_injected_429_reaches_the_client_with_retry_after(jira: JIRA, state: JiraState) -> None:
    state.core.inject_fault(429, path="/search/jql$", retry_after=7)

    with pytest.raises(JIRAError) as raised:
        jira.search_issues("project = OPS")

    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.response.json()["errorMessages"]


def test_rate_model_answers_429_then_recovers_after_reset(
    http: httpx.Client, state: JiraState
) -> None:
    state.set_rate_limit(0.5, burst=2)

    statuses = [http.get("/myself").status_code for _ in range(3)]
    refused = http.get("/myself")
    state.reset()

    assert statuses == [200, 200, 429]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["errorMessages"] == ["Rate limit exceeded."]
    assert http.get("/myself").status_code == 200


def test_fail_after_apply_creates_then_answers_500(http: httpx.Client, state: JiraState) -> None:
    state.fail_after_apply(1)
    fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "한 번만"}

    failed = http.post("/issue", json={"fields": fields})
    again = http.post("/issue", json={"fields": fields})

    assert (failed.status_code, again.status_code) == (500, 201)
    assert [i.summary for i in state.issues()] == ["한 번만", "한 번만"]


def test_reset_restores_the_seed(state: JiraState) -> None:
    new_issue(state)
    state.add_project("SHOP", "쇼핑몰")
    state.fail_after_apply(2)
    state.core.inject_fault(500)

    state.reset()

    assert state.issues() == []
    assert [p.key for p in state.projects] == ["OPS"]
    assert state.core.pending_faults == []
    assert state._take_apply_fault("/rest/api/2/issue") is None
    assert new_issue(state) == "OPS-1"


def test_seeded_projects_and_users_can_be_added(jira: JIRA, state: JiraState) -> None:
    state.add_project("SHOP", "쇼핑몰", issue_types=("Task",), components=("배송",))
    user = state.add_user("이서준", "seojun@moltbot.local")

    key = state.create_issue(
        {
            "project": {"key": "SHOP"},
            "issuetype": {"name": "Task"},
            "summary": "배송 지연",
            "components": [{"name": "배송"}],
            "assignee": {"accountId": user.account_id},
        }
    )

    assert key == "SHOP-1"
    assert jira.issue(key).fields.assignee.displayName == "이서준"
    assert [i.key for i in state.issues(project="SHOP")] == ["SHOP-1"]
    with pytest.raises(JiraApiError) as raised:
        state.create_issue(
            {"project": {"key": "SHOP"}, "issuetype": {"name": "Bug"}, "summary": "x"}
        )
    assert raised.value.errors == {"issuetype": "The issue type selected is invalid."}
