"""Jira tasks: JQL search over every page, bulk creation without duplicates, comments, workflow."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jira import JIRA
from jira.resources import Comment
from jira.utils import json_loads
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.jira import JiraCredentials, request_may_have_applied
from moltbot.errors import ServiceError

logger = logging.getLogger("moltbot.tasks.jira")

DEFAULT_FIELDS: tuple[str, ...] = ("summary", "labels", "status", "created")
# Jira Cloud's limits: 50 issues per bulk create, 100 issues per search page with fields.
BULK_CHUNK_SIZE = 50
SEARCH_PAGE_SIZE = 100
# Fields a search may name by id without the client's translation of JQL names, which costs a
# ``GET field`` per client: Jira Cloud's system field ids, custom field ids and the `*all` /
# `*navigable` / `-<id>` forms. Any other name (``Story Points``, ``cf[10016]``) is translated.
SYSTEM_FIELD_IDS = frozenset(
    {
        "aggregateprogress", "aggregatetimeestimate", "aggregatetimeoriginalestimate",
        "aggregatetimespent", "assignee", "attachment", "comment", "components", "created",
        "creator", "description", "duedate", "environment", "fixVersions", "issuelinks",
        "issuetype", "labels", "lastViewed", "parent", "priority", "progress", "project",
        "reporter", "resolution", "resolutiondate", "security", "status",
        "statuscategorychangedate", "subtasks", "summary", "timeestimate",
        "timeoriginalestimate", "timespent", "timetracking", "updated", "versions", "votes",
        "watches", "worklog", "workratio",
    }
)  # fmt: skip
_FIELD_ID = re.compile(r"customfield_\d+|\*all|\*navigable")


def _by_id(field: str) -> bool:
    """Whether Jira takes `field` as it is (an id, or `*all`), so no translation is needed."""
    name = field.removeprefix("-")
    return name in SYSTEM_FIELD_IDS or _FIELD_ID.fullmatch(name) is not None


# Ticket creation gives every draft a label `moltbot-<hash of its idempotency key>`; after an
# ambiguous failure a search for those labels tells which drafts Jira created.
DEDUP_LABEL_PREFIX = "moltbot-"
# Labels per dedup search: the JQL travels in the URL.
LABELS_PER_SEARCH = 200
# A comment added with a marker carries the comment property `moltbot` = {"key": <marker>}, so a
# run that died between Jira's answer and the ledger can look the comment up instead of adding it
# again (`find_comment_by_marker`).
MARKER_PROPERTY = "moltbot"
# Jira answers up to 5000 comments per page by default; 100 keeps each answer small enough for
# the read timeout and a retried page cheap.
COMMENT_PAGE_SIZE = 100


def dedup_label(idempotency_key: str) -> str:
    """The Jira label that marks the issue created for `idempotency_key` (``moltbot-<16 hex>``)."""
    return DEDUP_LABEL_PREFIX + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class BulkFailure:
    """A draft that was not created.

    Attributes:
        index: the draft's position in the list given.
        message: the block's name and Jira's own error text.
        errors: Jira's field errors for this draft (field -> message); empty for a request error.
        outcome_unknown: True when the request may have been applied but could not be checked
            (drafts without a unique dedup label); it was not re-sent, to avoid duplicates.
    """

    index: int
    message: str
    errors: dict[str, str] = field(default_factory=dict)
    outcome_unknown: bool = False


@dataclass
class BulkCreateResult:
    """Outcome of `bulk_create_issues`.

    Attributes:
        created: draft index -> issue key, for every draft that exists in Jira now.
        failures: the drafts that were not created (or whose fate is unknown), by index.
    """

    created: dict[int, str] = field(default_factory=dict)
    failures: list[BulkFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every draft was created."""
        return not self.failures

    @property
    def keys(self) -> list[str]:
        """Keys of the created issues, in draft order."""
        return [self.created[index] for index in sorted(self.created)]


def find_issues(
    credentials: JiraCredentials,
    jql: str,
    *,
    fields: Sequence[str] = DEFAULT_FIELDS,
    block_name: str | None = None,
    client: JIRA | None = None,
) -> list[dict[str, Any]]:
    """Every issue matching `jql`, following each ``nextPageToken`` (100 issues per request).

    Each page is retried on its own (429 honouring ``Retry-After``, 5xx, network), so a failure
    on page 3 does not fetch pages 1 and 2 again. Fields named by id (`SYSTEM_FIELD_IDS`,
    ``customfield_NNNNN``) are sent as they are; only a field named otherwise (``Story
    Points``) makes the client read ``GET field``, once per client, to translate it.

    Args:
        credentials: the Jira block.
        jql: the query (bounded: Jira Cloud refuses a query without any condition).
        fields: fields to return for each issue.
        block_name: the block's name for messages, when it was not loaded by name.
        client: a client to reuse (one from `credentials.get_client()`), saving its requests.

    Returns:
        Jira's issue objects: ``{"id", "key", "self", "fields": {...}}``.

    Raises:
        ServiceError: a refused query (Jira's JQL message) or a failure that outlasted retries.
    """
    client = client or credentials.get_client(block_name=block_name)
    translate = not all(_by_id(name) for name in fields)
    issues: list[dict[str, Any]] = []
    token: str | None = None
    page = 1
    while True:

        def fetch(token: str | None = token) -> dict[str, Any]:
            if translate:
                return client.enhanced_search_issues(
                    jql,
                    nextPageToken=token,
                    maxResults=SEARCH_PAGE_SIZE,
                    fields=list(fields),  # the client rewrites this list in place
                    json_result=True,
                )
            # The request enhanced_search_issues sends with json_result, minus the translation.
            params: dict[str, Any] = {
                "jql": jql,
                "fields": list(fields),
                "maxResults": SEARCH_PAGE_SIZE,
            }
            if token:
                params["nextPageToken"] = token
            answer: dict[str, Any] = client._get_json("search/jql", params=params)
            return answer

        try:
            result = credentials.call(fetch, action=f"search page {page}", block_name=block_name)
        except ServiceError as failure:
            # search/jql exists on Jira Cloud only: a 404 may be a Server or Data Center site.
            not_cloud = (
                credentials.not_cloud_error(client, block_name) if failure.status == 404 else None
            )
            if not_cloud is not None:
                raise not_cloud from None
            raise
        issues.extend(result.get("issues", []))
        token = result.get("nextPageToken")
        if not token or result.get("isLast", False):
            return issues
        page += 1


def create_issues_in_bulk(
    credentials: JiraCredentials,
    drafts: Sequence[Mapping[str, Any]],
    *,
    block_name: str | None = None,
) -> BulkCreateResult:
    """Create one issue per draft with ``POST issue/bulk``, 50 drafts per request.

    A draft is a REST v2 ``fields`` dict; ``project``, ``issuetype``, ``priority``,
    ``components`` and ``assignee`` may be plain strings (key, names, account id), which are
    sent as objects so the client makes no lookup requests: 250 drafts are 5 requests, and
    nothing else (building the client sends none). Drafts Jira refuses are reported with its
    field errors; the others are created.

    A 429 is retried after ``Retry-After`` (Jira applied nothing). After a 5xx, a timeout or a
    lost connection the chunk may have been created, so it is never blindly re-sent: when every
    draft of the chunk carries its own ``moltbot-…`` label (`dedup_label`), a label search finds
    which drafts exist and only the others are re-sent; otherwise the chunk is reported with
    ``outcome_unknown`` instead of risking duplicates. (Jira Cloud's search index can lag a
    write by a moment; the retry backoff precedes the search.)

    Args:
        credentials: the Jira block.
        drafts: one ``fields`` dict per issue to create.
        block_name: the block's name for messages, when it was not loaded by name.

    Returns:
        The created keys by draft index and the failures.

    Raises:
        ServiceError: the client could not connect (other failures are in the result).
    """
    result = BulkCreateResult()
    if not drafts:
        return result
    client = credentials.get_client(block_name=block_name)
    prepared = [(index, _prepare_fields(draft)) for index, draft in enumerate(drafts)]
    for start in range(0, len(prepared), BULK_CHUNK_SIZE):
        chunk = dict(prepared[start : start + BULK_CHUNK_SIZE])
        _create_chunk(client, credentials, chunk, result, block_name, start // BULK_CHUNK_SIZE + 1)
    result.failures.sort(key=lambda failure: failure.index)
    return result


def _create_chunk(
    client: JIRA,
    credentials: JiraCredentials,
    pending: dict[int, dict[str, Any]],
    result: BulkCreateResult,
    block_name: str | None,
    number: int,
) -> None:
    label = credentials.label(block_name)
    labels = _unique_dedup_labels(pending)
    # Set when a create request failed in a way that may have created issues; cleared only by
    # a label search that found out which.
    needs_check = False
    sending = False

    def check() -> None:
        nonlocal needs_check
        assert labels is not None  # needs_check without labels is refused in classify
        found = issues_by_label(
            credentials, [labels[i] for i in pending], block_name=block_name, client=client
        )
        for index in list(pending):
            if labels[index] in found:
                result.created[index] = found[labels[index]]
                del pending[index]
        needs_check = False
        logger.info(
            "%s: bulk chunk %d: %d drafts already created, re-sending %d",
            label,
            number,
            len(found),
            len(pending),
        )

    def send() -> list[dict[str, Any]]:
        nonlocal sending
        sending = False
        if needs_check:
            check()
        if not pending:
            return []
        sending = True
        items = client.create_issues(list(pending.values()), prefetch=False)
        sending = False
        return items

    def classify(exc: Exception) -> ServiceError | None:
        nonlocal needs_check
        failure = credentials.classify(exc, block_name)
        if failure is None:
            return None
        if sending and failure.transient and request_may_have_applied(exc):
            needs_check = True
            if labels is None:
                return ServiceError(
                    f"{failure} (not re-sent: the drafts carry no unique "
                    f"'{DEDUP_LABEL_PREFIX}' label to check what was created)",
                    transient=False,
                    status=failure.status,
                )
        return failure

    try:
        items = credentials.call(
            send, action=f"bulk create chunk {number}", block_name=block_name, classify=classify
        )
    except ServiceError as failure:
        if needs_check and labels is not None:
            # If this search fails too, the drafts stay pending and are reported as unknown.
            with contextlib.suppress(ServiceError):
                check()
        for index in pending:
            result.failures.append(
                BulkFailure(index, f"{failure} [draft {index}]", outcome_unknown=needs_check)
            )
        return
    for index, item in zip(list(pending), items, strict=True):
        if item["status"] == "Success":
            result.created[index] = item["issue"].key
        else:
            errors = {str(k): str(v) for k, v in (item["error"] or {}).items()}
            text = "; ".join(f"{name}: {message}" for name, message in errors.items())
            result.failures.append(
                BulkFailure(index, f"{label}: draft {index} refused: {text}", errors)
            )


def _unique_dedup_labels(pending: Mapping[int, Mapping[str, Any]]) -> dict[int, str] | None:
    """Each draft's dedup label, or None unless every draft has exactly one, all distinct."""
    labels: dict[int, str] = {}
    for index, fields in pending.items():
        own = [
            label
            for label in fields.get("labels") or []
            if isinstance(label, str) and label.startswith(DEDUP_LABEL_PREFIX)
        ]
        if len(own) != 1:
            return None
        labels[index] = own[0]
    return labels if len(set(labels.values())) == len(labels) else None


def issues_by_label(
    credentials: JiraCredentials,
    labels: Iterable[str],
    *,
    block_name: str | None = None,
    client: JIRA | None = None,
) -> dict[str, str]:
    """Dedup label -> key of the issue carrying it (the oldest, if somehow several): one JQL
    search per 200 labels (the query travels in the URL)."""
    wanted = list(dict.fromkeys(labels))
    found: dict[str, str] = {}
    if not wanted:
        return found
    client = client or credentials.get_client(block_name=block_name)
    for start in range(0, len(wanted), LABELS_PER_SEARCH):
        chunk = wanted[start : start + LABELS_PER_SEARCH]
        quoted = ", ".join(_jql_string(label) for label in chunk)
        jql = f"labels in ({quoted}) ORDER BY created ASC"
        for issue in find_issues(
            credentials, jql, fields=("labels",), block_name=block_name, client=client
        ):
            for label in issue["fields"].get("labels") or []:
                if label in chunk:
                    found.setdefault(label, issue["key"])
    return found


@task(name="find-labelled-issues", cache_policy=NO_CACHE)
def find_labelled_issues(
    credentials: JiraCredentials, labels: list[str], *, block_name: str
) -> dict[str, str]:
    """Which dedup labels already mark an issue (label -> the oldest issue's key)."""
    return issues_by_label(credentials, labels, block_name=block_name)


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _prepare_fields(draft: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a draft, turning plain strings into the objects Jira expects (no lookups needed)."""
    fields = dict(draft)
    for name, key in (("project", "key"), ("issuetype", "name"), ("priority", "name")):
        if isinstance(fields.get(name), str):
            fields[name] = {key: fields[name]}
    if isinstance(fields.get("assignee"), str):
        fields["assignee"] = {"accountId": fields["assignee"]}
    if isinstance(fields.get("components"), list):
        fields["components"] = [
            {"name": item} if isinstance(item, str) else item for item in fields["components"]
        ]
    return fields


def comment_on_issue(
    credentials: JiraCredentials,
    issue_key: str,
    body: str,
    *,
    marker: str | None = None,
    block_name: str | None = None,
) -> dict[str, Any]:
    """Add a plain-text comment to an issue, once.

    With a `marker` (the effect's idempotency key) the comment is created carrying the comment
    property ``moltbot`` = ``{"key": marker}`` in the same request, so a later run can find it
    with `find_comment_by_marker`. After a failure that may have been applied (5xx, timeout, lost
    connection) the issue's comments are read before re-sending: the comment with this marker,
    or without a marker an identical body, counts as this one.

    Args:
        credentials: the Jira block.
        issue_key: e.g. ``OPS-12``.
        body: the comment text (REST v2: plain text, not ADF).
        marker: the idempotency key to store on the comment, if any.
        block_name: the block's name for messages, when it was not loaded by name.

    Returns:
        Jira's comment object (``id``, ``body``, ``author``, ``created`` …).

    Raises:
        ServiceError: an unknown issue (404), refused body, or a failure that outlasted retries.
    """
    client = credentials.get_client(block_name=block_name)
    needs_check = False
    sending = False

    def send() -> dict[str, Any]:
        nonlocal needs_check, sending
        sending = False
        if needs_check:
            if marker is not None:
                # Pages are read inside this attempt: a failure repeats the whole check.
                found = _marked_comment(client, issue_key, marker, lambda read, _: read())
            else:
                same = [c.raw for c in client.comments(issue_key) if c.body == body]
                found = same[-1] if same else None
            needs_check = False
            if found is not None:
                return found
        sending = True
        comment = _post_comment(client, issue_key, body, marker)
        sending = False
        return comment.raw

    def classify(exc: Exception) -> ServiceError | None:
        nonlocal needs_check
        failure = credentials.classify(exc, block_name)
        if failure is not None and sending and request_may_have_applied(exc):
            needs_check = True
        return failure

    return credentials.call(
        send, action=f"comment on {issue_key}", block_name=block_name, classify=classify
    )


def find_comment_by_marker(
    credentials: JiraCredentials,
    issue_key: str,
    marker: str,
    *,
    block_name: str | None = None,
    client: JIRA | None = None,
) -> str | None:
    """The id of the oldest comment on the issue added with `marker`, or None if there is none.

    Reads the issue's comments oldest first, 100 per request with their properties expanded,
    until a comment's ``moltbot`` property has ``{"key": marker}`` or a page comes back empty.
    Each page is retried on its own (429 honouring ``Retry-After``, 5xx, network).

    Args:
        credentials: the Jira block.
        issue_key: e.g. ``OPS-12``.
        marker: the idempotency key given to `comment_on_issue`.
        block_name: the block's name for messages, when it was not loaded by name.
        client: a client to reuse (one from `credentials.get_client()`), saving its requests.

    Returns:
        The comment's id, e.g. ``"10042"``.

    Raises:
        ServiceError: an unknown issue (404) or a failure that outlasted retries.
    """
    client = client or credentials.get_client(block_name=block_name)

    def read_page(read: Callable[[], list[Comment]], page: int) -> list[Comment]:
        action = f"read comments of {issue_key} page {page}"
        return credentials.call(read, action=action, block_name=block_name)

    found = _marked_comment(client, issue_key, marker, read_page)
    return None if found is None else str(found["id"])


def _marked_comment(
    client: JIRA,
    issue_key: str,
    marker: str,
    read_page: Callable[[Callable[[], list[Comment]], int], list[Comment]],
) -> dict[str, Any] | None:
    """The raw comment carrying `marker`, reading each page through `read_page`."""
    for comment in _comments_with_properties(client, issue_key, read_page):
        for prop in comment.raw.get("properties") or []:
            value = prop.get("value")
            if (
                prop.get("key") == MARKER_PROPERTY
                and isinstance(value, dict)
                and value.get("key") == marker
            ):
                return comment.raw
    return None


def _comments_with_properties(
    client: JIRA,
    issue_key: str,
    read_page: Callable[[Callable[[], list[Comment]], int], list[Comment]],
) -> Iterator[Comment]:
    """Every comment of the issue, oldest first, with ``expand=properties``, page by page."""
    start = 0
    page = 1
    while True:

        def read(start: int = start) -> list[Comment]:
            return client.comments(
                issue_key,
                expand="properties",
                start_at=start,
                max_results=COMMENT_PAGE_SIZE,
                order_by="created",
            )

        comments = read_page(read, page)
        # The client returns the list without Jira's `total`, and Jira may answer fewer
        # comments than asked for (its cap per page can change), so only an empty page
        # proves there are no more.
        if not comments:
            return
        yield from comments
        start += len(comments)
        page += 1


def _post_comment(client: JIRA, issue_key: str, body: str, marker: str | None) -> Comment:
    """``POST issue/{key}/comment``, with the marker property when there is one."""
    if marker is None:
        return client.add_comment(issue_key, body)
    # `add_comment` sends properties only for Service Management's internal flag. Posting the
    # same request with our property through the client's session keeps its auth, timeouts and
    # JIRAError on refusals; marking the comment in the same request leaves no unmarked window.
    data = {"body": body, "properties": [{"key": MARKER_PROPERTY, "value": {"key": marker}}]}
    response = client._session.post(
        client._get_url(f"issue/{issue_key}/comment"), data=json.dumps(data)
    )
    return Comment(client._options, client._session, raw=json_loads(response))


def move_issue(
    credentials: JiraCredentials,
    issue_key: str,
    status: str,
    *,
    block_name: str | None = None,
) -> str:
    """Move an issue to the status named `status` (``In Progress``) through a transition.

    Idempotent: an issue already in that status is left alone, so a retry after an ambiguous
    failure is safe.

    Args:
        credentials: the Jira block.
        issue_key: e.g. ``OPS-12``.
        status: the target status name (case-insensitive) or transition name.
        block_name: the block's name for messages, when it was not loaded by name.

    Returns:
        The issue's status name now.

    Raises:
        ServiceError: no transition leads to `status`, or Jira failed.
    """
    client = credentials.get_client(block_name=block_name)
    target = status.casefold()

    def attempt() -> str:
        transitions = client.transitions(issue_key)
        chosen = next(
            (
                t
                for t in transitions
                if t["to"]["name"].casefold() == target or t["name"].casefold() == target
            ),
            None,
        )
        if chosen is None:
            current = client.issue(issue_key, fields="status").fields.status.name
            if current.casefold() == target:
                return current
            choices = ", ".join(sorted({t["to"]["name"] for t in transitions})) or "none"
            raise ServiceError(
                f"{credentials.label(block_name)}: {issue_key} is '{current}' and no transition "
                f"leads to '{status}' (possible: {choices})",
                transient=False,
            )
        client.transition_issue(issue_key, chosen["id"])
        return str(chosen["to"]["name"])

    return credentials.call(attempt, action=f"move {issue_key}", block_name=block_name)


def store_issue_property(
    credentials: JiraCredentials,
    issue_key: str,
    key: str,
    value: Any,
    *,
    block_name: str | None = None,
) -> None:
    """Set an issue entity property (JSON, at most 32 KB); a PUT, so retries are safe.

    Args:
        credentials: the Jira block.
        issue_key: e.g. ``OPS-12``.
        key: the property key.
        value: any JSON value.
        block_name: the block's name for messages, when it was not loaded by name.

    Raises:
        ServiceError: an unknown issue, a value Jira refuses, or a failure that outlasted retries.
    """
    client = credentials.get_client(block_name=block_name)
    credentials.call(
        lambda: client.add_issue_property(issue_key, key, value),
        action=f"set property {key} on {issue_key}",
        block_name=block_name,
    )


# Prefect tasks. Retries happen inside, per request (see JiraCredentials), so none are declared
# here: a task-level retry would repeat pages and chunks that already succeeded.
