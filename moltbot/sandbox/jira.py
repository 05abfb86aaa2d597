"""Jira Cloud REST v2 emulator (mounted at /jira): issues, bulk create, JQL search, comments."""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import hmac
import json
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from moltbot.sandbox.kit import (
    DroppedConnection,
    EmulatorCore,
    TokenBucketLimiter,
    install_emulator,
    relative_path,
)

SANDBOX_JIRA_EMAIL = "sandbox@moltbot.local"
SANDBOX_JIRA_TOKEN = "sandbox-jira-token"
SANDBOX_JIRA_ACCOUNT_ID = "712020:00000000-0000-4000-8000-00000000a001"
SANDBOX_PROJECT_KEY = "OPS"

MAX_BULK_ISSUES = 50
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
MAX_PROPERTY_LENGTH = 32768
MAX_PROPERTY_KEY_LENGTH = 255
# GET issue/{key}/comment: Jira documents a default page of 5000 and names no maximum; a Cloud
# issue holds at most 5000 comments, so the default page is also the largest that can be filled.
DEFAULT_COMMENT_PAGE_SIZE = 5000
MAX_COMMENT_PAGE_SIZE = 5000
MAX_SUMMARY_LENGTH = 255
API = "/rest/api/2"

# Jira Cloud's wording for these errors, where known (the rate-limit text is the sandbox's own).
NOT_AUTHENTICATED = "Client must be authenticated to access this resource."
ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at "
    "https://developer.atlassian.com/changelog/#CHANGE-2046"
)
RATE_LIMITED = "Rate limit exceeded."
_JQL_OPERATORS = (
    "The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', "
    "'IS' and 'IS NOT'."
)


class JiraApiError(Exception):
    """An error answered in Jira's shape; raised by handlers and by `JiraState` seeding methods.

    Attributes:
        status: HTTP status.
        messages: ``errorMessages`` (request-level errors).
        errors: ``errors`` (field name -> message).
        headers: extra response headers (``Retry-After`` …).
    """

    def __init__(
        self,
        status: int,
        messages: Iterable[str] = (),
        errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})
        super().__init__("; ".join([*self.messages, *self.errors.values()]) or str(status))

    def response(self) -> JSONResponse:
        """The JSON answer Jira would send."""
        return JSONResponse(
            {"errorMessages": self.messages, "errors": self.errors},
            status_code=self.status,
            headers=self.headers,
        )


def error_response(status: int, message: str) -> JSONResponse:
    """Jira's error shape: ``{"errorMessages": [...], "errors": {}}``."""
    return JSONResponse({"errorMessages": [message], "errors": {}}, status_code=status)


# ---------------------------------------------------------------------------------------------
# Catalogs: what a fresh Jira Cloud site with one software project has.


@dataclass(frozen=True)
class JiraUser:
    """A user of the emulated site (Cloud identifies users by account id only)."""

    account_id: str
    display_name: str
    email: str
    time_zone: str = "Asia/Seoul"
    active: bool = True


@dataclass(frozen=True)
class IssueType:
    """An issue type (Task, Bug, Incident)."""

    id: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class Priority:
    """A priority, Highest (1) to Lowest (5)."""

    id: str
    name: str


@dataclass(frozen=True)
class Status:
    """A workflow status and its category (``new``, ``indeterminate``, ``done``)."""

    id: str
    name: str
    category: Literal["new", "indeterminate", "done"]


@dataclass
class JiraProject:
    """A project: key, name, allowed issue types and components (name -> id)."""

    id: str
    key: str
    name: str
    issue_types: tuple[str, ...]
    components: dict[str, str]
    lead: str


ISSUE_TYPES: tuple[IssueType, ...] = (
    IssueType("10001", "Task", "A small, distinct piece of work."),
    IssueType("10002", "Bug", "A problem or error."),
    IssueType("10003", "Incident", "A service disruption to restore."),
)
PRIORITIES: tuple[Priority, ...] = (
    Priority("1", "Highest"),
    Priority("2", "High"),
    Priority("3", "Medium"),
    Priority("4", "Low"),
    Priority("5", "Lowest"),
)
DEFAULT_PRIORITY = "3"
STATUSES: tuple[Status, ...] = (
    Status("10000", "To Do", "new"),
    Status("3", "In Progress", "indeterminate"),
    Status("10001", "Done", "done"),
)
INITIAL_STATUS = "10000"
# Jira Cloud's simplified workflow: one global transition into each status, named after it.
TRANSITIONS: dict[str, str] = {"11": "10000", "21": "3", "31": "10001"}
_CATEGORIES = {
    "new": (2, "blue-gray", "To Do"),
    "indeterminate": (4, "yellow", "In Progress"),
    "done": (3, "green", "Done"),
}

SEED_USERS: tuple[JiraUser, ...] = (
    JiraUser(SANDBOX_JIRA_ACCOUNT_ID, "moltbot sandbox", SANDBOX_JIRA_EMAIL),
    JiraUser("712020:00000000-0000-4000-8000-00000000a002", "Alex Park", "alex@moltbot.local"),
    JiraUser("712020:00000000-0000-4000-8000-00000000a003", "김민지", "minji@moltbot.local"),
)
SEED_COMPONENTS: tuple[str, ...] = ("Payments", "Web", "Support")


@dataclass(frozen=True)
class FieldDef:
    """A system field as ``GET field`` lists it."""

    id: str
    name: str
    clause_names: tuple[str, ...]
    schema: dict[str, str]
    navigable: bool = True
    orderable: bool = True


FIELDS: tuple[FieldDef, ...] = (
    FieldDef("summary", "Summary", ("summary",), {"type": "string", "system": "summary"}),
    FieldDef(
        "description", "Description", ("description",), {"type": "string", "system": "description"}
    ),
    FieldDef(
        "issuetype",
        "Issue Type",
        ("issuetype", "type"),
        {"type": "issuetype", "system": "issuetype"},
    ),
    FieldDef("project", "Project", ("project",), {"type": "project", "system": "project"}),
    FieldDef("priority", "Priority", ("priority",), {"type": "priority", "system": "priority"}),
    FieldDef(
        "labels", "Labels", ("labels",), {"type": "array", "items": "string", "system": "labels"}
    ),
    FieldDef(
        "components",
        "Components",
        ("component",),
        {"type": "array", "items": "component", "system": "components"},
    ),
    FieldDef("assignee", "Assignee", ("assignee",), {"type": "user", "system": "assignee"}),
    FieldDef("reporter", "Reporter", ("reporter",), {"type": "user", "system": "reporter"}),
    FieldDef(
        "creator", "Creator", ("creator",), {"type": "user", "system": "creator"}, orderable=False
    ),
    FieldDef(
        "status", "Status", ("status",), {"type": "status", "system": "status"}, orderable=False
    ),
    FieldDef(
        "created",
        "Created",
        ("created", "createdDate"),
        {"type": "datetime", "system": "created"},
        orderable=False,
    ),
    FieldDef(
        "updated",
        "Updated",
        ("updated", "updatedDate"),
        {"type": "datetime", "system": "updated"},
        orderable=False,
    ),
    FieldDef("duedate", "Due date", ("due", "duedate"), {"type": "date", "system": "duedate"}),
    FieldDef(
        "resolution",
        "Resolution",
        ("resolution",),
        {"type": "resolution", "system": "resolution"},
    ),
    FieldDef(
        "resolutiondate",
        "Resolved",
        ("resolutiondate", "resolved"),
        {"type": "datetime", "system": "resolutiondate"},
        orderable=False,
    ),
    FieldDef(
        "comment",
        "Comment",
        ("comment",),
        {"type": "comments-page", "system": "comment"},
        navigable=False,
    ),
)
_FIELD_IDS = {f.id for f in FIELDS}
_FIELD_ALIASES = {alias.lower(): f.id for f in FIELDS for alias in (f.id, f.name, *f.clause_names)}
_SETTABLE = {
    "summary",
    "description",
    "issuetype",
    "project",
    "priority",
    "labels",
    "components",
    "assignee",
    "reporter",
    "duedate",
}
_ISSUE_KEY = re.compile(r"^([A-Z][A-Z0-9_]+)-(\d+)$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Stored issues and their snapshots.


@dataclass(frozen=True)
class CommentSnapshot:
    """A comment as stored: id, plain-text body, author account id, creation time (UTC) and
    its entity properties (key -> JSON value), given when it was added."""

    id: str
    body: str
    author: str
    created: datetime
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IssueSnapshot:
    """A copy of one issue as the emulator holds it (names, not ids, for readable asserts).

    Attributes:
        key: ``OPS-1``.
        id: numeric id as a string.
        project: project key.
        summary: summary text.
        description: plain-text description (REST v2), or None.
        issue_type: issue type name.
        priority: priority name.
        status: status name.
        labels: labels in the order given.
        components: component names.
        assignee: assignee account id, or None.
        reporter: reporter account id.
        due_date: due date, or None.
        created: creation time (UTC).
        updated: last change (UTC).
        comments: comments, oldest first.
        properties: entity properties (key -> JSON value).
    """

    key: str
    id: str
    project: str
    summary: str
    description: str | None
    issue_type: str
    priority: str | None
    status: str
    labels: tuple[str, ...]
    components: tuple[str, ...]
    assignee: str | None
    reporter: str
    due_date: date | None
    created: datetime
    updated: datetime
    comments: tuple[CommentSnapshot, ...]
    properties: dict[str, Any]


@dataclass
class _Issue:
    id: int
    key: str
    project: str
    summary: str
    description: str | None
    issue_type: str  # id
    priority: str | None  # id
    status: str  # id
    labels: list[str]
    components: list[str]  # ids
    assignee: str | None
    reporter: str
    due_date: date | None
    created: datetime
    updated: datetime
    resolved: datetime | None = None
    comments: list[CommentSnapshot] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class _ApplyFault:
    status: int
    kind: Literal["status", "hang", "drop"]
    seconds: float
    remaining: int
    path: re.Pattern[str] | None


class JiraState:
    """In-memory state of the Jira emulator: projects, users, issues, request log and faults.

    Seeded (and restored by `reset`) with project ``OPS`` ("Operations", id 10000) having issue
    types Task, Bug and Incident and components Payments, Web and Support; priorities Highest to
    Lowest; statuses To Do, In Progress and Done with one global transition into each; users
    `SEED_USERS` (the sandbox account first). Handlers and tests share it across threads, so every
    accessor takes one lock and returns copies.

    Args:
        rate_limit: average requests per second per account before 429 (None: no limit).
        burst: requests allowed at once by the rate model.
        seed: seed of the random draws of probabilistic faults.
    """

    def __init__(
        self, *, rate_limit: float | None = None, burst: int = 100, seed: int | None = None
    ) -> None:
        self.core = EmulatorCore("jira", seed=seed)
        self._lock = threading.RLock()
        self._rate_config = (rate_limit, burst)
        self._limiter = TokenBucketLimiter(rate_limit, burst)
        self._apply_faults: deque[_ApplyFault] = deque()
        # What serverInfo reports: "Cloud", or "Server" / "DataCenter" to stand in for a
        # self-hosted site that moltbot must refuse (`reset` brings back "Cloud").
        self.deployment_type = "Cloud"
        self._seed()

    # -- lifecycle ------------------------------------------------------------------------------

    def _seed(self) -> None:
        with self._lock:
            self._projects: dict[str, JiraProject] = {}
            self._users: dict[str, JiraUser] = {u.account_id: u for u in SEED_USERS}
            self._issues: dict[str, _Issue] = {}
            self._issue_ids: dict[int, str] = {}
            self._counters: dict[str, int] = {}
            self._next_issue_id = 10001
            self._next_comment_id = 10001
            self._next_project_id = 10000
            self._next_component_id = 10000
            self._last_created = datetime.min.replace(tzinfo=UTC)
            self._apply_faults.clear()
        self.add_project(SANDBOX_PROJECT_KEY, "Operations", components=SEED_COMPONENTS)

    def reset(self) -> None:
        """Back to the seeded state, with no requests logged, no faults and a fresh rate model."""
        self.core.reset()
        rate, burst = self._rate_config
        self._limiter = TokenBucketLimiter(rate, burst)
        self.deployment_type = "Cloud"
        self._seed()

    def set_rate_limit(self, rate: float | None, burst: int = 100) -> None:
        """Answer 429 with ``Retry-After`` beyond `rate` requests per second per account.

        `reset` restores the limit given to the constructor (none by default).
        """
        self._limiter = TokenBucketLimiter(rate, burst)

    # -- reading --------------------------------------------------------------------------------

    @property
    def users(self) -> list[JiraUser]:
        """Every user of the site, the sandbox account first."""
        with self._lock:
            return list(self._users.values())

    def user_by_name(self, display_name: str) -> JiraUser:
        """The user with this display name (``"김민지"``); KeyError when there is none."""
        for user in self.users:
            if user.display_name == display_name:
                return user
        raise KeyError(display_name)

    def project(self, key: str) -> JiraProject:
        """A copy of the project with this key or id; KeyError when unknown."""
        with self._lock:
            project = self._find_project(key)
            if project is None:
                raise KeyError(key)
            return copy.deepcopy(project)

    @property
    def projects(self) -> list[JiraProject]:
        """Copies of every project, oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._projects.values()))

    def issues(self, project: str | None = None) -> list[IssueSnapshot]:
        """Snapshots of every issue (of one project when given), oldest first."""
        with self._lock:
            return [
                self._snapshot(issue)
                for issue in self._ordered_issues()
                if project is None or issue.project == project.upper()
            ]

    def issue(self, key: str) -> IssueSnapshot:
        """Snapshot of one issue by key or id; KeyError when unknown."""
        with self._lock:
            issue = self._find_issue(key)
            if issue is None:
                raise KeyError(key)
            return self._snapshot(issue)

    # -- seeding --------------------------------------------------------------------------------

    def add_project(
        self,
        key: str,
        name: str,
        *,
        issue_types: Iterable[str] = ("Task", "Bug", "Incident"),
        components: Iterable[str] = (),
        lead: str = SANDBOX_JIRA_ACCOUNT_ID,
    ) -> JiraProject:
        """Create a project and return a copy of it.

        Raises:
            ValueError: a taken or malformed key, or an unknown issue type.
        """
        key = key.upper()
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{1,9}", key):
            raise ValueError(f"project key must be 2-10 capital letters/digits, got {key!r}")
        types = tuple(issue_types)
        known = {t.name for t in ISSUE_TYPES}
        if unknown := [t for t in types if t not in known]:
            raise ValueError(f"unknown issue types {unknown}; known: {sorted(known)}")
        with self._lock:
            if key in self._projects:
                raise ValueError(f"project {key} exists")
            component_ids = {}
            for component in components:
                component_ids[component] = str(self._next_component_id)
                self._next_component_id += 1
            project = JiraProject(str(self._next_project_id), key, name, types, component_ids, lead)
            self._next_project_id += 1
            self._projects[key] = project
            self._counters[key] = 0
            return copy.deepcopy(project)

    def add_user(self, display_name: str, email: str, account_id: str | None = None) -> JiraUser:
        """Add a user (an account id is derived from the e-mail when not given)."""
        if account_id is None:
            digest = hashlib.sha256(email.encode()).hexdigest()
            account_id = f"712020:{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-"
            account_id += digest[20:32]
        user = JiraUser(account_id, display_name, email)
        with self._lock:
            self._users[account_id] = user
        return user

    def create_issue(self, fields: dict[str, Any], *, reporter: str | None = None) -> str:
        """Create an issue from a REST ``fields`` dict, validated as the API does; returns its key.

        Raises:
            JiraApiError: the field errors Jira would answer (400).
        """
        with self._lock:
            return self._create(fields, reporter or SANDBOX_JIRA_ACCOUNT_ID).key

    def add_comment(
        self,
        key: str,
        body: str,
        *,
        properties: list[dict[str, Any]] | None = None,
        author: str | None = None,
    ) -> str:
        """Add a comment to an issue as ``POST issue/{key}/comment`` would; returns its id.

        Args:
            key: the issue's key or id.
            body: plain-text body.
            properties: comment properties in the REST shape, ``[{"key": …, "value": …}]``.
            author: account id (the sandbox account by default).

        Raises:
            KeyError: no such issue.
            JiraApiError: the errors Jira would answer (400).
        """
        with self._lock:
            issue = self._find_issue(key)
            if issue is None:
                raise KeyError(key)
            return self._comment(issue, body, author or SANDBOX_JIRA_ACCOUNT_ID, properties).id

    def fail_after_apply(
        self,
        count: int = 1,
        *,
        status: int = 500,
        kind: Literal["status", "hang", "drop"] = "status",
        seconds: float = 30.0,
        path: str | None = None,
    ) -> None:
        """Make the next `count` creating requests take effect, then fail.

        Covers ``POST issue``, ``POST issue/bulk`` and ``POST issue/{key}/comment`` (or those whose
        path matches the regex `path`). The kit's faults answer before a handler runs, so they model
        a request that never arrived; this models the harder case of a create that happened but
        whose answer was lost: ``status`` answers `status`, ``hang`` waits `seconds` (past the
        client's timeout) before answering, ``drop`` closes the connection without an answer.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if kind == "status" and not 500 <= status <= 599:
            raise ValueError(f"status must be 5xx, got {status}")
        pattern = re.compile(path) if path is not None else None
        with self._lock:
            self._apply_faults.append(_ApplyFault(status, kind, seconds, count, pattern))

    # -- internals: lookup ----------------------------------------------------------------------

    def _take_apply_fault(self, path: str) -> _ApplyFault | None:
        with self._lock:
            for fault in self._apply_faults:
                if fault.path is None or fault.path.search(path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._apply_faults.remove(fault)
                    return fault
        return None

    def _throttle(self, account_id: str) -> float | None:
        return self._limiter.acquire(account_id)

    def _find_project(self, key_or_id: str) -> JiraProject | None:
        wanted = str(key_or_id).strip()
        for project in self._projects.values():
            if wanted.upper() == project.key or wanted == project.id:
                return project
        return None

    def _find_issue(self, key_or_id: str) -> _Issue | None:
        wanted = str(key_or_id).strip()
        if wanted.isdigit():
            key = self._issue_ids.get(int(wanted))
            return self._issues.get(key) if key else None
        return self._issues.get(wanted.upper())

    def _ordered_issues(self) -> list[_Issue]:
        return sorted(self._issues.values(), key=lambda issue: issue.id)

    def _snapshot(self, issue: _Issue) -> IssueSnapshot:
        return IssueSnapshot(
            key=issue.key,
            id=str(issue.id),
            project=issue.project,
            summary=issue.summary,
            description=issue.description,
            issue_type=_by_id(ISSUE_TYPES, issue.issue_type).name,
            priority=_by_id(PRIORITIES, issue.priority).name if issue.priority else None,
            status=_by_id(STATUSES, issue.status).name,
            labels=tuple(issue.labels),
            components=tuple(self._component_names(issue)),
            assignee=issue.assignee,
            reporter=issue.reporter,
            due_date=issue.due_date,
            created=issue.created,
            updated=issue.updated,
            comments=tuple(
                replace(c, properties=copy.deepcopy(c.properties)) for c in issue.comments
            ),
            properties=copy.deepcopy(issue.properties),
        )

    def _component_names(self, issue: _Issue) -> list[str]:
        by_id = {cid: name for name, cid in self._projects[issue.project].components.items()}
        return [by_id[cid] for cid in issue.components]

    def _now(self) -> datetime:
        # Strictly increasing, so ORDER BY created is the creation order even within a millisecond.
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if now <= self._last_created:
            now = self._last_created + timedelta(milliseconds=1)
        self._last_created = now
        return now

    # -- internals: writes (call with the lock held) --------------------------------------------

    def _create(self, fields: Any, reporter: str) -> _Issue:
        values = self._validate_create(fields)
        project = values["project"]
        self._counters[project.key] += 1
        now = self._now()
        issue = _Issue(
            id=self._next_issue_id,
            key=f"{project.key}-{self._counters[project.key]}",
            project=project.key,
            summary=values["summary"],
            description=values.get("description"),
            issue_type=values["issuetype"],
            priority=values.get("priority", DEFAULT_PRIORITY),
            status=INITIAL_STATUS,
            labels=values.get("labels", []),
            components=values.get("components", []),
            assignee=values.get("assignee"),
            reporter=values.get("reporter", reporter),
            due_date=values.get("duedate"),
            created=now,
            updated=now,
        )
        self._next_issue_id += 1
        self._issues[issue.key] = issue
        self._issue_ids[issue.id] = issue.key
        return issue

    def _validate_create(self, fields: Any) -> dict[str, Any]:
        if not isinstance(fields, dict):
            raise JiraApiError(400, ["Can not deserialize instance of fields out of the value"])
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        project = self._resolve_project(fields.get("project"))
        if project is None:
            errors["project"] = "Specify a valid project ID or key"
        else:
            values["project"] = project
        if "issuetype" not in fields or fields["issuetype"] in (None, {}):
            errors["issuetype"] = "Specify an issue type"
        else:
            issue_type = _resolve_named(ISSUE_TYPES, fields["issuetype"])
            allowed = project.issue_types if project else tuple(t.name for t in ISSUE_TYPES)
            if issue_type is None or issue_type.name not in allowed:
                errors["issuetype"] = "The issue type selected is invalid."
            else:
                values["issuetype"] = issue_type.id
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > MAX_SUMMARY_LENGTH:
            errors["summary"] = "Summary must be less than 255 characters."
        elif "\n" in summary or "\r" in summary:
            errors["summary"] = "The summary is invalid because it contains newline characters."
        else:
            values["summary"] = summary
        extra = {k: v for k, v in fields.items() if k not in ("project", "issuetype", "summary")}
        errors.update(self._validate_editable(extra, project, values))
        if errors:
            raise JiraApiError(400, [], errors)
        return values

    def _validate_editable(
        self, fields: dict[str, Any], project: JiraProject | None, values: dict[str, Any]
    ) -> dict[str, str]:
        """Check optional fields, filling `values` (ids); returns Jira's field errors."""
        errors: dict[str, str] = {}
        for name, value in fields.items():
            if name not in _SETTABLE:
                errors[name] = _cannot_set(name)
            elif name == "summary":
                if not isinstance(value, str) or not value.strip():
                    errors[name] = "You must specify a summary of the issue."
                elif len(value) > MAX_SUMMARY_LENGTH:
                    errors[name] = "Summary must be less than 255 characters."
                else:
                    values[name] = value
            elif name == "description":
                if value is not None and not isinstance(value, str):
                    errors[name] = "Operation value must be a string"
                else:
                    values[name] = value
            elif name == "priority":
                if value is None:
                    values[name] = None
                elif not isinstance(value, dict) or not (
                    isinstance(value.get("name"), str) or isinstance(value.get("id"), str | int)
                ):
                    errors[name] = "Specify the Priority (id or name) in the string format"
                elif (priority := _resolve_named(PRIORITIES, value)) is None:
                    errors[name] = "The priority selected is invalid."
                else:
                    values[name] = priority.id
            elif name == "labels":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    errors[name] = "Field 'labels' must be an array of strings"
                elif bad := next((v for v in value if not v or re.search(r"\s", v)), None):
                    errors[name] = f"The label '{bad}' contains spaces which is invalid."
                elif long := next((v for v in value if len(v) > 255), None):
                    errors[name] = f"The label '{long[:20]}…' exceeds 255 characters."
                else:
                    values[name] = list(dict.fromkeys(value))
            elif name == "components":
                error, ids = self._resolve_components(value, project)
                if error:
                    errors[name] = error
                else:
                    values[name] = ids
            elif name in ("assignee", "reporter"):
                if value is None and name == "assignee":
                    values[name] = None
                    continue
                account = (
                    value.get("accountId", value.get("id")) if isinstance(value, dict) else None
                )
                if not isinstance(account, str) or account not in self._users:
                    errors[name] = f"Specify a valid value for {name}"
                else:
                    values[name] = account
            elif name == "duedate":
                if value is None:
                    values[name] = None
                    continue
                try:
                    values[name] = date.fromisoformat(str(value))
                except ValueError:
                    errors[name] = f"Error parsing date string: {value}"
        return errors

    def _resolve_project(self, value: Any) -> JiraProject | None:
        if isinstance(value, dict):
            value = value.get("key", value.get("id"))
        if not isinstance(value, str | int):
            return None
        return self._find_project(str(value))

    def _resolve_components(
        self, value: Any, project: JiraProject | None
    ) -> tuple[str | None, list[str]]:
        if not isinstance(value, list):
            return "Field 'components' must be an array of components", []
        known = project.components if project else {}
        ids: list[str] = []
        for item in value:
            if not isinstance(item, dict):
                return "expected Object containing a 'name' or 'id' property", []
            if "id" in item:
                if str(item["id"]) not in known.values():
                    return f"Component with id '{item['id']}' does not exist.", []
                ids.append(str(item["id"]))
            elif item.get("name") in known:
                ids.append(known[item["name"]])
            else:
                return f"Component name '{item.get('name')}' is not valid", []
        return None, list(dict.fromkeys(ids))

    def _edit(self, issue: _Issue, body: Any) -> None:
        if not isinstance(body, dict):
            raise JiraApiError(400, ["Can not deserialize the request body"])
        fields = body.get("fields") or {}
        update = body.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise JiraApiError(400, ["Can not deserialize the request body"])
        project = self._projects[issue.project]
        for locked in ("project", "issuetype"):
            if locked in fields:
                raise JiraApiError(
                    400, [], {locked: f"Field '{locked}' cannot be changed by editing the issue."}
                )
        values: dict[str, Any] = {}
        errors = self._validate_editable(fields, project, values)
        labels = list(values.get("labels", issue.labels))
        comments: list[str] = []
        for name, operations in update.items():
            if name not in ("labels", "comment") or not isinstance(operations, list):
                errors[name] = _cannot_set(name)
                continue
            for operation in operations:
                if name == "labels" and isinstance(operation, dict):
                    for verb, label in operation.items():
                        if verb == "add" and label not in labels:
                            labels.append(label)
                        elif verb == "remove" and label in labels:
                            labels.remove(label)
                        elif verb == "set":
                            labels = list(label)
                elif name == "comment" and isinstance(operation, dict):
                    comments.append(str((operation.get("add") or {}).get("body", "")))
        if errors:
            raise JiraApiError(400, [], errors)
        for name, value in values.items():
            attribute = {"issuetype": "issue_type", "duedate": "due_date"}.get(name, name)
            setattr(issue, attribute, value)
        issue.labels = labels
        for body_text in comments:
            self._comment(issue, body_text, SANDBOX_JIRA_ACCOUNT_ID)
        issue.updated = self._now()

    def _comment(
        self, issue: _Issue, body: Any, author: str, properties: Any = None
    ) -> CommentSnapshot:
        if not isinstance(body, str) or not body.strip():
            raise JiraApiError(400, [], {"comment": "Comment body can not be empty!"})
        values = _comment_properties(properties)
        comment = CommentSnapshot(str(self._next_comment_id), body, author, self._now(), values)
        self._next_comment_id += 1
        issue.comments.append(comment)
        issue.updated = comment.created
        return comment

    def _transition(self, issue: _Issue, transition_id: str) -> None:
        target = TRANSITIONS.get(transition_id)
        if target is None or target == issue.status:
            raise JiraApiError(
                400, [f"Transition id '{transition_id}' is not valid for this issue."]
            )
        issue.status = target
        issue.updated = self._now()
        done = _by_id(STATUSES, target).category == "done"
        issue.resolved = issue.updated if done else None


def _comment_properties(given: Any) -> dict[str, Any]:
    """The ``properties`` of a new comment (``[{"key", "value"}]``) as key -> value.

    Checked before anything is stored, with the limits of entity properties (a key of at most
    255 characters, a value of at most 32 KB of JSON); a later entry with the same key wins.

    Raises:
        JiraApiError: 400 for a malformed list or a value beyond the limits.
    """
    if given is None:
        return {}
    malformed = JiraApiError(
        400, ["Comment properties must be a list of objects with a 'key' and a 'value'."]
    )
    if not isinstance(given, list):
        raise malformed
    values: dict[str, Any] = {}
    for item in given:
        if not isinstance(item, dict) or "value" not in item:
            raise malformed
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise malformed
        if len(key) > MAX_PROPERTY_KEY_LENGTH:
            raise JiraApiError(
                400,
                [f"The property key can not be longer than {MAX_PROPERTY_KEY_LENGTH} characters."],
            )
        if len(json.dumps(item["value"], ensure_ascii=False)) > MAX_PROPERTY_LENGTH:
            raise JiraApiError(
                400,
                [
                    "The property value is too long. "
                    f"The maximum allowed length is {MAX_PROPERTY_LENGTH}."
                ],
            )
        values[key] = copy.deepcopy(item["value"])
    return values


def _cannot_set(name: str) -> str:
    return f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."


def _by_id(items: Iterable[Any], wanted: str | None) -> Any:
    return next(item for item in items if item.id == wanted)


def _resolve_named(items: Iterable[Any], value: Any) -> Any:
    """Find a catalog entry from ``{"id": …}``, ``{"name": …}`` or a bare id/name."""
    if isinstance(value, dict):
        if "id" in value:
            return next((i for i in items if i.id == str(value["id"])), None)
        value = value.get("name")
    if not isinstance(value, str | int):
        return None
    text = str(value)
    return next((i for i in items if i.id == text or i.name.lower() == text.lower()), None)


# ---------------------------------------------------------------------------------------------
# Rendering in Jira's JSON.


def _jira_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


class _Renderer:
    """Builds Jira JSON whose ``self`` links point back at the server the client called."""

    def __init__(self, state: JiraState, base: str) -> None:
        self.state = state
        self.base = base
        self.api = f"{base}{API}"

    def user(self, account_id: str | None, *, with_email: bool = False) -> dict[str, Any] | None:
        if account_id is None:
            return None
        user = self.state._users.get(account_id)
        if user is None:
            return None
        data: dict[str, Any] = {
            "self": f"{self.api}/user?accountId={user.account_id}",
            "accountId": user.account_id,
            "accountType": "atlassian",
            "avatarUrls": {},
            "displayName": user.display_name,
            "active": user.active,
            "timeZone": user.time_zone,
            "locale": "en_US",
        }
        if with_email:
            data["emailAddress"] = user.email
        return data

    def issue_type(self, type_id: str) -> dict[str, Any]:
        issue_type = _by_id(ISSUE_TYPES, type_id)
        return {
            "self": f"{self.api}/issuetype/{issue_type.id}",
            "id": issue_type.id,
            "description": issue_type.description,
            "iconUrl": f"{self.base}/images/icons/issuetypes/{issue_type.name.lower()}.svg",
            "name": issue_type.name,
            "subtask": False,
            "hierarchyLevel": 0,
        }

    def priority(self, priority_id: str | None) -> dict[str, Any] | None:
        if priority_id is None:
            return None
        priority = _by_id(PRIORITIES, priority_id)
        return {
            "self": f"{self.api}/priority/{priority.id}",
            "iconUrl": f"{self.base}/images/icons/priorities/{priority.name.lower()}.svg",
            "name": priority.name,
            "id": priority.id,
        }

    def status(self, status_id: str) -> dict[str, Any]:
        status = _by_id(STATUSES, status_id)
        category_id, color, category_name = _CATEGORIES[status.category]
        return {
            "self": f"{self.api}/status/{status.id}",
            "description": "",
            "iconUrl": f"{self.base}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": {
                "self": f"{self.api}/statuscategory/{category_id}",
                "id": category_id,
                "key": status.category,
                "colorName": color,
                "name": category_name,
            },
        }

    def project(self, project: JiraProject, *, full: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "self": f"{self.api}/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "software",
            "simplified": False,
            "avatarUrls": {},
        }
        if full:
            data.update(
                {
                    "description": "",
                    "lead": self.user(project.lead),
                    "components": [self.component(project, n) for n in project.components],
                    "issueTypes": [
                        self.issue_type(t.id) for t in ISSUE_TYPES if t.name in project.issue_types
                    ],
                    "assigneeType": "UNASSIGNED",
                    "versions": [],
                    "roles": {},
                    "style": "classic",
                    "isPrivate": False,
                }
            )
        return data

    def component(self, project: JiraProject, name: str) -> dict[str, Any]:
        component_id = project.components[name]
        return {
            "self": f"{self.api}/component/{component_id}",
            "id": component_id,
            "name": name,
            "project": project.key,
            "projectId": int(project.id),
        }

    def comment(
        self, issue: _Issue, comment: CommentSnapshot, *, properties: bool = False
    ) -> dict[str, Any]:
        """A comment; its properties only with ``expand=properties``, as Jira does."""
        author = self.user(comment.author)
        data: dict[str, Any] = {
            "self": f"{self.api}/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": author,
            "body": comment.body,
            "updateAuthor": author,
            "created": _jira_time(comment.created),
            "updated": _jira_time(comment.created),
            "jsdPublic": True,
        }
        if properties:
            data["properties"] = [
                {"key": key, "value": copy.deepcopy(value)}
                for key, value in comment.properties.items()
            ]
        return data

    def comments_page(
        self,
        issue: _Issue,
        *,
        start: int = 0,
        size: int | None = None,
        newest_first: bool = False,
        properties: bool = False,
    ) -> dict[str, Any]:
        """A page of comments; without `size`, every comment (the issue's ``comment`` field)."""
        ordered = list(reversed(issue.comments)) if newest_first else issue.comments
        page = ordered[start:] if size is None else ordered[start : start + size]
        return {
            "comments": [self.comment(issue, c, properties=properties) for c in page],
            "self": f"{self.api}/issue/{issue.id}/comment",
            "maxResults": len(issue.comments) if size is None else size,
            "total": len(issue.comments),
            "startAt": start,
        }

    def field(self, issue: _Issue, name: str) -> Any:
        project = self.state._projects[issue.project]
        match name:
            case "summary":
                return issue.summary
            case "description":
                return issue.description
            case "issuetype":
                return self.issue_type(issue.issue_type)
            case "project":
                return self.project(project)
            case "priority":
                return self.priority(issue.priority)
            case "labels":
                return list(issue.labels)
            case "components":
                names = self.state._component_names(issue)
                return [self.component(project, n) for n in names]
            case "assignee":
                return self.user(issue.assignee)
            case "reporter" | "creator":
                return self.user(issue.reporter)
            case "status":
                return self.status(issue.status)
            case "created":
                return _jira_time(issue.created)
            case "updated":
                return _jira_time(issue.updated)
            case "duedate":
                return issue.due_date.isoformat() if issue.due_date else None
            case "resolution":
                return None if issue.resolved is None else {"id": "10000", "name": "Done"}
            case "resolutiondate":
                return _jira_time(issue.resolved) if issue.resolved else None
            case "comment":
                return self.comments_page(issue)
        return None

    def issue(
        self,
        issue: _Issue,
        fields: list[str],
        *,
        names: bool = False,
        properties: list[str] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog",
            "id": str(issue.id),
            "self": f"{self.api}/issue/{issue.id}",
            "key": issue.key,
        }
        if fields:
            data["fields"] = {name: self.field(issue, name) for name in fields}
        if names:
            data["names"] = {f.id: f.name for f in FIELDS if f.id in fields}
        if properties:
            wanted = issue.properties if "*all" in properties else properties
            data["properties"] = {
                key: copy.deepcopy(issue.properties[key])
                for key in wanted
                if key in issue.properties
            }
        return data


def _wanted_fields(raw: Iterable[str], default: list[str]) -> list[str]:
    """Jira's ``fields`` parameter: ids or names, ``*all``, ``*navigable``, ``-name`` to drop."""
    tokens = [token.strip() for value in raw for token in str(value).split(",") if token.strip()]
    if not tokens:
        return list(default)
    include: list[str] = []
    exclude: set[str] = set()
    for token in tokens:
        if token == "*all":
            include.extend(f.id for f in FIELDS)
        elif token == "*navigable":
            include.extend(f.id for f in FIELDS if f.navigable)
        elif token.startswith("-"):
            if (field_id := _FIELD_ALIASES.get(token[1:].lower())) is not None:
                exclude.add(field_id)
        elif (field_id := _FIELD_ALIASES.get(token.lower())) is not None:
            include.append(field_id)
        # Unknown names (and ``id``/``key``) select nothing, as in Jira.
    return [name for name in dict.fromkeys(include) if name not in exclude]


# ---------------------------------------------------------------------------------------------
# JQL: the subset moltbot's automations use.

_JQL_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<operator>!=|!~|<=|>=|=|~|<|>)
      | (?P<punct>[(),])
      | (?P<word>[^\s"'(),=!~<>]+)
      | (?P<open>["'])
    )""",
    re.VERBOSE,
)
_TEXT_FIELDS = {"text", "summary", "description", "comment"}
_LIST_FIELDS = {
    "project",
    "labels",
    "status",
    "key",
    "priority",
    "issuetype",
    "assignee",
    "component",
}
_JQL_FIELDS = {
    "project": "project",
    "labels": "labels",
    "status": "status",
    "key": "key",
    "issuekey": "key",
    "text": "text",
    "summary": "summary",
    "description": "description",
    "comment": "comment",
    "priority": "priority",
    "issuetype": "issuetype",
    "type": "issuetype",
    "assignee": "assignee",
    "component": "component",
}
_SORT_FIELDS = {"created": "created", "updated": "updated", "key": "key", "priority": "priority"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    value: str
    position: int  # 1-based character, as in Jira's messages


@dataclass(frozen=True)
class JqlClause:
    """One ``field operator value(s)`` condition of a parsed query."""

    field: str
    typed_field: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class JqlQuery:
    """A parsed query: clauses joined by AND, then the ORDER BY fields (name, descending)."""

    clauses: tuple[JqlClause, ...]
    order: tuple[tuple[str, bool], ...]


def _jql_error(message: str, token: _Token | None = None) -> JiraApiError:
    where = f" (line 1, character {token.position})" if token is not None else ""
    return JiraApiError(400, [f"Error in the JQL Query: {message}{where}"])


def _tokenize(jql: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(jql):
        match = _JQL_TOKEN.match(jql, position)
        if match is None or match.end() == position:
            break
        start = match.start(match.lastgroup) + 1
        text = match.group(match.lastgroup)
        if match.lastgroup == "open":
            raise _jql_error(
                f"The quoted string '{jql[start:]}' has not been completed.",
                _Token("open", text, text, start),
            )
        value = text
        if match.lastgroup == "string":
            value = re.sub(r"\\(.)", r"\1", text[1:-1])
        tokens.append(_Token(match.lastgroup, text, value, start))
        position = match.end()
    return tokens


def parse_jql(jql: str) -> JqlQuery:
    """Parse the supported subset of JQL.

    Supported: clauses ``field = v``, ``!=``, ``IN (…)``, ``NOT IN (…)`` and ``~`` joined by
    ``AND``; fields project, labels, status, key/issuekey, text, summary, description, comment,
    priority, issuetype/type, assignee, component; ``ORDER BY created|updated|key|priority
    [ASC|DESC]``. Anything else answers 400 with Jira's wording.

    Raises:
        JiraApiError: a syntax error or a construct the sandbox does not support (400).
    """
    tokens = _tokenize(jql)
    clauses: list[JqlClause] = []
    order: list[tuple[str, bool]] = []
    index = 0

    def peek() -> _Token | None:
        return tokens[index] if index < len(tokens) else None

    def keyword(token: _Token | None, *words: str) -> bool:
        return token is not None and token.kind == "word" and token.value.upper() in words

    def unsupported(token: _Token) -> JiraApiError:
        return _jql_error(
            f"the moltbot sandbox does not support '{token.text}'; it supports "
            "'=', '!=', 'IN', 'NOT IN' and '~' clauses joined by AND, and ORDER BY",
            token,
        )

    def read_value() -> str:
        nonlocal index
        token = peek()
        if token is None:
            raise _jql_error(
                "Expecting either a value, list or function before the end of the query."
            )
        if token.kind == "string" or (
            token.kind == "word" and not keyword(token, "AND", "OR", "ORDER", "NOT", "IN")
        ):
            index += 1
            return token.value
        raise _jql_error(
            f"Expecting either a value, list or function but got '{token.text}'. "
            f"You must surround '{token.text}' in quotation marks to use it as a value.",
            token,
        )

    while index < len(tokens):
        token = tokens[index]
        if keyword(token, "ORDER"):
            break
        if token.kind == "punct" and token.value == "(":
            raise unsupported(token)
        if token.kind not in ("word", "string") or keyword(token, "AND", "OR", "NOT"):
            raise _jql_error(f"Expecting a field name but got '{token.text}'.", token)
        typed = token.value
        name = _JQL_FIELDS.get(typed.lower())
        if name is None:
            if typed.lower() in _FIELD_ALIASES or typed.lower().startswith("cf["):
                raise unsupported(token)
            raise JiraApiError(
                400, [f"Field '{typed}' does not exist or you do not have permission to view it."]
            )
        index += 1
        op_token = peek()
        if op_token is None:
            raise _jql_error(f"Expecting operator before the end of the query. {_JQL_OPERATORS}")
        if op_token.kind == "operator" and op_token.value in ("=", "!=", "~"):
            operator = op_token.value
            index += 1
            values = (read_value(),)
        elif keyword(op_token, "IN") or (
            keyword(op_token, "NOT")
            and index + 1 < len(tokens)
            and keyword(tokens[index + 1], "IN")
        ):
            operator = "not in" if keyword(op_token, "NOT") else "in"
            index += 2 if operator == "not in" else 1
            opener = peek()
            if opener is None or opener.kind != "punct" or opener.value != "(":
                raise _jql_error("Expecting '(' after IN.", opener)
            index += 1
            items = [read_value()]
            while (
                (separator := peek()) is not None
                and separator.value == ","
                and (separator.kind == "punct")
            ):
                index += 1
                items.append(read_value())
            closer = peek()
            if closer is None or closer.kind != "punct" or closer.value != ")":
                raise _jql_error("Expecting ')' to close the list.", closer)
            index += 1
            values = tuple(items)
        elif op_token.kind == "operator" or keyword(op_token, "IS", "WAS", "CHANGED", "NOT"):
            raise unsupported(op_token)
        else:
            raise _jql_error(
                f"Expecting operator but got '{op_token.text}'. {_JQL_OPERATORS}", op_token
            )
        if operator == "~" and name not in _TEXT_FIELDS:
            raise JiraApiError(400, [f"The operator '~' is not supported by the '{typed}' field."])
        if operator != "~" and name in _TEXT_FIELDS:
            raise JiraApiError(
                400, [f"The operator '{operator}' is not supported by the '{typed}' field."]
            )
        clauses.append(JqlClause(name, typed, operator, values))
        following = peek()
        if following is None or keyword(following, "ORDER"):
            continue
        if keyword(following, "AND"):
            index += 1
            if peek() is None:
                raise _jql_error("Expecting a field name before the end of the query.")
            continue
        if keyword(following, "OR"):
            raise unsupported(following)
        raise _jql_error(f"Expecting either 'OR' or 'AND' but got '{following.text}'.", following)

    if index < len(tokens):
        index += 1
        if not keyword(peek(), "BY"):
            raise _jql_error("Expecting 'BY' after 'ORDER'.", peek())
        index += 1
        while True:
            token = peek()
            if token is None or token.kind not in ("word", "string"):
                raise _jql_error("Expecting a field name after ORDER BY.", token)
            name = _SORT_FIELDS.get(token.value.lower())
            if name is None:
                raise JiraApiError(400, [f"Not able to sort using field '{token.value}'."])
            index += 1
            descending = False
            if keyword(peek(), "ASC", "DESC"):
                descending = peek().value.upper() == "DESC"  # type: ignore[union-attr]
                index += 1
            order.append((name, descending))
            if (separator := peek()) is not None and separator.value == ",":
                index += 1
                continue
            if separator is not None:
                raise _jql_error(
                    f"Expecting ',' or the end of the query but got '{separator.text}'.", separator
                )
            break
    if not clauses:
        raise JiraApiError(
            400,
            [
                "Unbounded JQL queries are not allowed here. "
                "Please add a search restriction to your query."
            ],
        )
    return JqlQuery(tuple(clauses), tuple(order))


def _terms(text: str) -> list[str]:
    return [term.strip("*").casefold() for term in text.split() if term.strip("*")]


class _JqlMatcher:
    """Evaluates a parsed query against the state (call with the state's lock held)."""

    def __init__(self, state: JiraState, query: JqlQuery) -> None:
        self.state = state
        self.tests: list[Callable[[_Issue], bool]] = [self._compile(c) for c in query.clauses]
        self.order = query.order

    def _compile(self, clause: JqlClause) -> Callable[[_Issue], bool]:
        if clause.operator == "~":
            terms = _terms(clause.values[0])
            return lambda issue: all(t in self._text(issue, clause.field) for t in terms)
        accepted = self._accepted(clause)
        if clause.field == "labels":
            if clause.operator in ("=", "in"):
                return lambda issue: any(label in accepted for label in issue.labels)
            return lambda issue: (
                bool(issue.labels) and not any(label in accepted for label in issue.labels)
            )
        if clause.field == "component":
            if clause.operator in ("=", "in"):
                return lambda issue: any(c in accepted for c in issue.components)
            return lambda issue: not any(c in accepted for c in issue.components)
        attribute = {
            "project": "project",
            "status": "status",
            "key": "key",
            "priority": "priority",
            "issuetype": "issue_type",
            "assignee": "assignee",
        }[clause.field]
        if clause.operator in ("=", "in"):
            return lambda issue: getattr(issue, attribute) in accepted
        return lambda issue: getattr(issue, attribute) not in accepted

    def _accepted(self, clause: JqlClause) -> set[str]:
        """The stored values a clause's values stand for; unknown values are Jira's 400."""
        accepted: set[str] = set()
        for value in clause.values:
            found: str | None
            match clause.field:
                case "labels":
                    found = value
                case "project":
                    project = self.state._find_project(value)
                    if project is None:
                        project = next(
                            (
                                p
                                for p in self.state._projects.values()
                                if p.name.lower() == value.lower()
                            ),
                            None,
                        )
                    found = project.key if project else None
                case "status":
                    found = getattr(_resolve_named(STATUSES, value), "id", None)
                case "priority":
                    found = getattr(_resolve_named(PRIORITIES, value), "id", None)
                case "issuetype":
                    found = getattr(_resolve_named(ISSUE_TYPES, value), "id", None)
                case "assignee":
                    found = next(
                        (
                            u.account_id
                            for u in self.state._users.values()
                            if value in (u.account_id, u.email, u.display_name)
                        ),
                        None,
                    )
                case "component":
                    ids = [
                        cid
                        for p in self.state._projects.values()
                        for name, cid in p.components.items()
                        if value.lower() == name.lower() or value == cid
                    ]
                    accepted.update(ids)
                    found = ids[0] if ids else None
                case _:  # key
                    if not _ISSUE_KEY.match(value) and not value.isdigit():
                        raise JiraApiError(
                            400,
                            [
                                f"The issue key '{value}' for field "
                                f"'{clause.typed_field}' is invalid."
                            ],
                        )
                    issue = self.state._find_issue(value)
                    if issue is None:
                        raise JiraApiError(
                            400,
                            [
                                f"An issue with key '{value}' does not exist for field "
                                f"'{clause.typed_field}'."
                            ],
                        )
                    found = issue.key
            if found is None:
                raise JiraApiError(
                    400,
                    [f"The value '{value}' does not exist for the field '{clause.typed_field}'."],
                )
            accepted.add(found)
        return accepted

    @staticmethod
    def _text(issue: _Issue, field_name: str) -> str:
        parts: list[str] = []
        if field_name in ("text", "summary"):
            parts.append(issue.summary)
        if field_name in ("text", "description"):
            parts.append(issue.description or "")
        if field_name in ("text", "comment"):
            parts.extend(c.body for c in issue.comments)
        return "\n".join(parts).casefold()

    def search(self) -> list[_Issue]:
        found = [i for i in self.state._ordered_issues() if all(t(i) for t in self.tests)]
        for name, descending in reversed(self.order or (("created", False),)):
            found.sort(key=self._sort_key(name), reverse=descending)
        return found

    @staticmethod
    def _sort_key(name: str) -> Callable[[_Issue], Any]:
        if name == "key":
            return lambda issue: (issue.project, int(issue.key.rsplit("-", 1)[1]))
        if name == "priority":
            return lambda issue: int(issue.priority or 99)
        return lambda issue: (getattr(issue, name), issue.id)


def _page_token(offset: int, jql: str) -> str:
    digest = hashlib.sha256(jql.encode()).hexdigest()[:8]
    return base64.urlsafe_b64encode(f"{offset}:{digest}".encode()).decode().rstrip("=")


def _page_offset(token: str, jql: str) -> int:
    invalid = JiraApiError(400, ["The provided next page token is invalid or expired."])
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset, digest = decoded.split(":", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    if not offset.isdigit() or digest != hashlib.sha256(jql.encode()).hexdigest()[:8]:
        raise invalid
    return int(offset)


# ---------------------------------------------------------------------------------------------
# The HTTP app.


def _api_base(request: Request) -> str:
    """Scheme, host and context path the client used (``http://127.0.0.1:8765/jira``)."""
    url = str(request.url.replace(query=""))
    return url.split(f"{API}/", 1)[0] if f"{API}/" in url else url.rstrip("/")


def _account_from_header(request: Request) -> str | None:
    """The account id of valid basic credentials; None when no credentials were sent.

    Raises:
        JiraApiError: 401 for wrong or malformed credentials.
    """
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, encoded = header.partition(" ")
    expected = f"{SANDBOX_JIRA_EMAIL}:{SANDBOX_JIRA_TOKEN}".encode()
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        given = b""
    if scheme.lower() != "basic" or not hmac.compare_digest(given, expected):
        raise JiraApiError(
            401,
            [NOT_AUTHENTICATED],
            headers={
                "WWW-Authenticate": 'Basic realm="moltbot sandbox Jira"',
                "X-Seraph-LoginReason": "AUTHENTICATED_FAILED",
            },
        )
    return SANDBOX_JIRA_ACCOUNT_ID


def _int_param(name: str, value: str | None, default: int) -> int:
    """A whole-number query parameter, or Jira's 400 for anything else."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise JiraApiError(400, [f"'{value}' is not a valid value for {name}."]) from None


def _expands(expand: str | None, option: str) -> bool:
    """Whether a comma-separated ``expand`` asks for `option` (unknown options are ignored)."""
    return option in {part.strip() for part in (expand or "").split(",")}


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise JiraApiError(400, ["No content to map due to end-of-input"])
    try:
        return json.loads(raw)
    except ValueError:
        raise JiraApiError(
            400, ["Unexpected character in the request body: not valid JSON"]
        ) from None


class _DroppingResponse(Response):
    """Starts the answer and closes the connection, after the change was applied."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise DroppedConnection("jira: connection dropped after applying (injected)")


def create_jira_app(state: JiraState) -> FastAPI:
    """Build the sub-app serving `state` (mount it at Jira's context path, ``/jira``).

    Routes, under ``/rest/api/2``: ``serverInfo`` (Cloud), ``myself``, ``field``, ``project``,
    ``project/{key}``, ``project/{key}/components``, ``issuetype``,
    ``issue/createmeta/{project}/issuetypes``, ``priority``, ``status``, ``user``,
    ``user/search``, ``POST issue``, ``POST issue/bulk``, ``GET/PUT issue/{key}``,
    ``GET/POST search/jql``, ``GET/POST search`` (410, removed on Cloud),
    ``GET/POST issue/{key}/comment``, ``GET issue/{key}/comment/{id}``,
    ``GET/POST issue/{key}/transitions``, ``GET issue/{key}/properties``,
    ``GET/PUT/DELETE issue/{key}/properties/{property}``. Plus the kit's ``/_sandbox`` routes.
    """

    def authenticated(request: Request) -> str:
        account = _account_from_header(request)
        if account is None:
            raise JiraApiError(
                401,
                [NOT_AUTHENTICATED],
                headers={"WWW-Authenticate": 'Basic realm="moltbot sandbox Jira"'},
            )
        wait = state._throttle(account)
        if wait is not None:
            raise JiraApiError(
                429,
                [RATE_LIMITED],
                headers={
                    "Retry-After": str(max(1, math.ceil(wait))),
                    "X-RateLimit-Limit": str(state._limiter.burst),
                    "RateLimit-Reason": "jira-burst-based",
                },
            )
        return account

    app = FastAPI(title="moltbot sandbox: jira", docs_url=None, redoc_url=None, openapi_url=None)
    # serverInfo answers anonymous callers, as on Cloud, but still refuses wrong credentials.
    public = APIRouter(prefix=API)
    api = APIRouter(prefix=API, dependencies=[Depends(authenticated)])
    lock = state._lock

    @app.exception_handler(JiraApiError)
    async def jira_error(_: Request, exc: JiraApiError) -> Response:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            message = f"No resource found for {request.method} {relative_path(request.scope)}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(400, problems)

    def render(request: Request) -> _Renderer:
        return _Renderer(state, _api_base(request))

    def issue_or_404(key: str) -> _Issue:
        issue = state._find_issue(key)
        if issue is None:
            raise JiraApiError(404, [ISSUE_NOT_FOUND])
        return issue

    async def after_apply(request: Request, answer: Response) -> Response:
        fault = state._take_apply_fault(relative_path(request.scope))
        if fault is None:
            return answer
        if fault.kind == "drop":
            return _DroppingResponse()
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            return answer
        return error_response(fault.status, "Internal server error (injected after applying).")

    @public.get("/serverInfo")
    def server_info(request: Request) -> JSONResponse:
        _account_from_header(request)
        base = _api_base(request)
        return JSONResponse(
            {
                "baseUrl": base,
                "displayUrl": base,
                "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0],
                "deploymentType": state.deployment_type,
                "buildNumber": 100289,
                "buildDate": "2026-11-20T00:00:00.000+0000",
                "serverTime": _jira_time(datetime.now(UTC)),
                "scmInfo": "sandbox",
                "serverTitle": "moltbot sandbox Jira",
                "defaultLocale": {"locale": "en_US"},
                "serverTimeZone": "Etc/UTC",
            }
        )

    @api.get("/myself")
    def myself(request: Request, account: str = Depends(authenticated)) -> JSONResponse:
        with lock:
            return JSONResponse(render(request).user(account, with_email=True))

    @api.get("/field")
    def fields() -> JSONResponse:
        return JSONResponse(
            [
                {
                    "id": f.id,
                    "key": f.id,
                    "name": f.name,
                    "custom": False,
                    "orderable": f.orderable,
                    "navigable": f.navigable,
                    "searchable": True,
                    "clauseNames": list(f.clause_names),
                    "schema": f.schema,
                }
                for f in FIELDS
            ]
        )

    @api.get("/project")
    def projects(request: Request) -> JSONResponse:
        with lock:
            renderer = render(request)
            return JSONResponse([renderer.project(p) for p in state._projects.values()])

    def project_or_404(key: str) -> JiraProject:
        project = state._find_project(key)
        if project is None:
            raise JiraApiError(404, [f"No project could be found with key '{key}'."])
        return project

    @api.get("/project/{key}")
    def project(request: Request, key: str) -> JSONResponse:
        with lock:
            return JSONResponse(render(request).project(project_or_404(key), full=True))

    @api.get("/project/{key}/components")
    def components(request: Request, key: str) -> JSONResponse:
        with lock:
            found = project_or_404(key)
            renderer = render(request)
            return JSONResponse([renderer.component(found, n) for n in found.components])

    @api.get("/issuetype")
    def issue_types(request: Request) -> JSONResponse:
        renderer = render(request)
        return JSONResponse([renderer.issue_type(t.id) for t in ISSUE_TYPES])

    @api.get("/issue/createmeta/{key}/issuetypes")
    def createmeta_issue_types(request: Request, key: str) -> JSONResponse:
        with lock:
            found = project_or_404(key)
            renderer = render(request)
            values = [renderer.issue_type(t.id) for t in ISSUE_TYPES if t.name in found.issue_types]
        return JSONResponse(
            {
                "issueTypes": values,
                "values": values,
                "maxResults": 50,
                "startAt": 0,
                "total": len(values),
                "isLast": True,
            }
        )

    @api.get("/priority")
    def priorities(request: Request) -> JSONResponse:
        renderer = render(request)
        return JSONResponse([renderer.priority(p.id) for p in PRIORITIES])

    @api.get("/status")
    def statuses(request: Request) -> JSONResponse:
        renderer = render(request)
        return JSONResponse([renderer.status(s.id) for s in STATUSES])

    @api.get("/user")
    def user(request: Request, accountId: str) -> JSONResponse:
        with lock:
            found = render(request).user(accountId)
        if found is None:
            raise JiraApiError(
                404, ["Specified user does not exist or you do not have required permissions"]
            )
        return JSONResponse(found)

    @api.get("/user/search")
    def user_search(request: Request, query: str = "") -> JSONResponse:
        needle = query.casefold()
        with lock:
            renderer = render(request)
            return JSONResponse(
                [
                    renderer.user(u.account_id)
                    for u in state._users.values()
                    if needle in u.display_name.casefold() or needle in u.email.casefold()
                ]
            )

    @api.post("/issue")
    async def create_issue(request: Request, account: str = Depends(authenticated)) -> Response:
        body = await _json_body(request)
        with lock:
            if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
                raise JiraApiError(400, [], {"project": "Specify a valid project ID or key"})
            issue = state._create(body["fields"], account)
            if body.get("update"):
                state._edit(issue, {"update": body["update"]})
            api_url = render(request).api
        answer = JSONResponse(
            {"id": str(issue.id), "key": issue.key, "self": f"{api_url}/issue/{issue.id}"},
            status_code=201,
        )
        return await after_apply(request, answer)

    @api.post("/issue/bulk")
    async def create_issues(request: Request, account: str = Depends(authenticated)) -> Response:
        body = await _json_body(request)
        updates = body.get("issueUpdates") if isinstance(body, dict) else None
        if not isinstance(updates, list) or not updates:
            raise JiraApiError(400, ["issueUpdates must contain at least one issue"])
        if len(updates) > MAX_BULK_ISSUES:
            raise JiraApiError(
                400,
                [
                    f"Bulk create is limited to {MAX_BULK_ISSUES} issues per request; "
                    f"got {len(updates)}."
                ],
            )
        created: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        with lock:
            api_url = render(request).api
            for number, update in enumerate(updates):
                fields = update.get("fields") if isinstance(update, dict) else None
                try:
                    issue = state._create(fields, account)
                except JiraApiError as exc:
                    errors.append(
                        {
                            "status": exc.status,
                            "elementErrors": {"errorMessages": exc.messages, "errors": exc.errors},
                            "failedElementNumber": number,
                        }
                    )
                    continue
                created.append(
                    {"id": str(issue.id), "key": issue.key, "self": f"{api_url}/issue/{issue.id}"}
                )
        status = 201 if created else 400
        answer = JSONResponse({"issues": created, "errors": errors}, status_code=status)
        return await after_apply(request, answer) if created else answer

    @api.get("/issue/{key}")
    def get_issue(
        request: Request,
        key: str,
        expand: str | None = None,
        properties: str | None = None,
    ) -> JSONResponse:
        wanted = _wanted_fields(request.query_params.getlist("fields"), [f.id for f in FIELDS])
        with lock:
            issue = issue_or_404(key)
            return JSONResponse(
                render(request).issue(
                    issue,
                    wanted,
                    names="names" in (expand or "").split(","),
                    properties=(properties or "").split(",") if properties else None,
                )
            )

    @api.put("/issue/{key}")
    async def edit_issue(request: Request, key: str) -> Response:
        body = await _json_body(request)
        with lock:
            state._edit(issue_or_404(key), body)
        return Response(status_code=204)

    def search_page(
        request: Request,
        jql: str,
        token: str | None,
        max_results: Any,
        fields: list[str],
        properties: list[str] | None,
    ) -> JSONResponse:
        try:
            size = DEFAULT_PAGE_SIZE if max_results in (None, "") else int(max_results)
        except (TypeError, ValueError):
            raise JiraApiError(
                400, [f"'{max_results}' is not a valid value for maxResults."]
            ) from None
        size = min(max(size, 1), MAX_PAGE_SIZE)
        query = parse_jql(jql)
        offset = _page_offset(token, jql) if token else 0
        wanted = _wanted_fields(fields, [])
        with lock:
            found = _JqlMatcher(state, query).search()
            renderer = render(request)
            page = [
                renderer.issue(issue, wanted, properties=properties)
                for issue in found[offset : offset + size]
            ]
        data: dict[str, Any] = {"issues": page, "isLast": offset + size >= len(found)}
        if not data["isLast"]:
            data["nextPageToken"] = _page_token(offset + size, jql)
        return JSONResponse(data)

    @api.get("/search/jql")
    def search_jql(
        request: Request,
        jql: str = "",
        nextPageToken: str | None = None,
        maxResults: str | None = None,
        properties: str | None = None,
    ) -> JSONResponse:
        return search_page(
            request,
            jql,
            nextPageToken,
            maxResults,
            request.query_params.getlist("fields"),
            properties.split(",") if properties else None,
        )

    @api.post("/search/jql")
    async def search_jql_post(request: Request) -> JSONResponse:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise JiraApiError(400, ["The request body must be a JSON object."])
        fields = body.get("fields") or []
        properties = body.get("properties") or None
        return search_page(
            request,
            str(body.get("jql") or ""),
            body.get("nextPageToken"),
            body.get("maxResults"),
            [fields] if isinstance(fields, str) else list(fields),
            [properties] if isinstance(properties, str) else properties,
        )

    @api.api_route("/search", methods=["GET", "POST"])
    def removed_search() -> JSONResponse:
        return error_response(410, SEARCH_REMOVED)

    @api.get("/issue/{key}/comment")
    def list_comments(
        request: Request,
        key: str,
        startAt: str | None = None,
        maxResults: str | None = None,
        orderBy: str | None = None,
        expand: str | None = None,
    ) -> JSONResponse:
        start = _int_param("startAt", startAt, 0)
        size = min(
            _int_param("maxResults", maxResults, DEFAULT_COMMENT_PAGE_SIZE), MAX_COMMENT_PAGE_SIZE
        )
        # A "+" that was not percent-encoded arrives as a space.
        order = (orderBy or "created").strip().removeprefix("+")
        if order not in ("created", "-created"):
            raise JiraApiError(
                400, [f"'{orderBy}' is not a valid value for orderBy; use created or -created."]
            )
        with lock:
            issue = issue_or_404(key)
            return JSONResponse(
                render(request).comments_page(
                    issue,
                    start=max(start, 0),
                    size=max(size, 0),
                    newest_first=order == "-created",
                    properties=_expands(expand, "properties"),
                )
            )

    @api.get("/issue/{key}/comment/{comment_id}")
    def get_comment(
        request: Request, key: str, comment_id: str, expand: str | None = None
    ) -> JSONResponse:
        with lock:
            issue = issue_or_404(key)
            comment = next((c for c in issue.comments if c.id == comment_id), None)
            if comment is None:
                raise JiraApiError(404, [f"Can not find a comment for the id: {comment_id}."])
            return JSONResponse(
                render(request).comment(issue, comment, properties=_expands(expand, "properties"))
            )

    @api.post("/issue/{key}/comment")
    async def add_comment(
        request: Request, key: str, account: str = Depends(authenticated), expand: str | None = None
    ) -> Response:
        body = await _json_body(request)
        with lock:
            issue = issue_or_404(key)
            given = body if isinstance(body, dict) else {}
            comment = state._comment(issue, given.get("body"), account, given.get("properties"))
            answer = JSONResponse(
                render(request).comment(issue, comment, properties=_expands(expand, "properties")),
                status_code=201,
            )
        return await after_apply(request, answer)

    @api.get("/issue/{key}/transitions")
    def transitions(request: Request, key: str) -> JSONResponse:
        with lock:
            issue = issue_or_404(key)
            renderer = render(request)
            available = [
                {
                    "id": transition_id,
                    "name": _by_id(STATUSES, target).name,
                    "to": renderer.status(target),
                    "hasScreen": False,
                    "isGlobal": True,
                    "isInitial": False,
                    "isAvailable": True,
                    "isConditional": False,
                    "isLooped": False,
                }
                for transition_id, target in TRANSITIONS.items()
                if target != issue.status
            ]
        return JSONResponse({"expand": "transitions", "transitions": available})

    @api.post("/issue/{key}/transitions")
    async def do_transition(request: Request, key: str) -> Response:
        body = await _json_body(request)
        transition = body.get("transition") if isinstance(body, dict) else None
        transition_id = transition.get("id") if isinstance(transition, dict) else None
        if transition_id is None:
            raise JiraApiError(400, ["Missing 'transition' identifier"])
        with lock:
            issue = issue_or_404(key)
            state._transition(issue, str(transition_id))
            if body.get("fields") or body.get("update"):
                state._edit(issue, {"fields": body.get("fields"), "update": body.get("update")})
        return Response(status_code=204)

    @api.get("/issue/{key}/properties")
    def property_keys(request: Request, key: str) -> JSONResponse:
        with lock:
            issue = issue_or_404(key)
            api_url = render(request).api
            return JSONResponse(
                {
                    "keys": [
                        {"self": f"{api_url}/issue/{issue.id}/properties/{name}", "key": name}
                        for name in issue.properties
                    ]
                }
            )

    @api.get("/issue/{key}/properties/{name}")
    def get_property(key: str, name: str) -> JSONResponse:
        with lock:
            issue = issue_or_404(key)
            if name not in issue.properties:
                raise JiraApiError(404, [f"The property with key '{name}' does not exist."])
            return JSONResponse({"key": name, "value": copy.deepcopy(issue.properties[name])})

    @api.put("/issue/{key}/properties/{name}")
    async def set_property(key: str, name: str, request: Request) -> Response:
        raw = await request.body()
        if len(raw.decode("utf-8", "replace")) > MAX_PROPERTY_LENGTH:
            raise JiraApiError(
                400,
                [
                    "The property value is too long. "
                    f"The maximum allowed length is {MAX_PROPERTY_LENGTH}."
                ],
            )
        if len(name) > 255:
            raise JiraApiError(400, ["The property key can not be longer than 255 characters."])
        value = await _json_body(request)
        with lock:
            issue = issue_or_404(key)
            existed = name in issue.properties
            issue.properties[name] = value
        return Response(status_code=200 if existed else 201)

    @api.delete("/issue/{key}/properties/{name}")
    def delete_property(key: str, name: str) -> Response:
        with lock:
            issue = issue_or_404(key)
            if issue.properties.pop(name, None) is None:
                raise JiraApiError(404, [f"The property with key '{name}' does not exist."])
        return Response(status_code=204)

    app.include_router(public)
    app.include_router(api)
    install_emulator(app, state.core, error_response)
    return app
