"""JiraCredentials against the Jira emulator: client, error messages, timeouts, saved blocks."""

from __future__ import annotations

import pytest
import requests
from jira import JIRA, JIRAError

from blocks import JiraCredentials
from blocks.jira import request_may_have_applied
from moltbot.errors import ServiceError
from moltbot.masking import mask_text
from moltbot.retrying import recorded_sleeps
from moltbot.sandbox import Sandbox
from moltbot.sandbox.jira import SANDBOX_JIRA_EMAIL
from moltbot.sandbox.kit import EmulatorCore
from tests.sandbox.helpers import jira_block


@pytest.fixture
def core(sandbox: Sandbox) -> EmulatorCore:
    return sandbox.state.jira.core


def test_get_client_is_a_cloud_client_after_one_request(sandbox: Sandbox, core) -> None:
    client = jira_block(sandbox.base_url).get_client(block_name="sandbox-jira")

    assert isinstance(client, JIRA)
    assert client.deploymentType == "Cloud"
    assert client._session.max_retries == 0  # our retries only, see JiraCredentials
    assert client._session.timeout == (5.0, 10.0)
    assert [r.path for r in core.requests] == ["/rest/api/2/serverInfo"]


def test_wrong_token_is_a_clear_permanent_error_naming_the_block(sandbox: Sandbox, core) -> None:
    block = jira_block(sandbox.base_url, api_token="wrong-token-5f2a")

    with pytest.raises(ServiceError) as raised:
        block.get_client(block_name="sandbox-jira")

    error = raised.value
    assert str(error) == (
        "Jira block 'sandbox-jira': 401 Client must be authenticated to access this resource. "
        "(check the block's e-mail and API token)"
    )
    assert (error.status, error.transient) == (401, False)
    assert "wrong-token-5f2a" not in str(error)
    # The library's error (with the request's Authorization header) is not chained.
    assert error.__cause__ is None and error.__context__ is None
    assert len(core.requests) == 1  # a 401 is not retried
    assert mask_text("token wrong-token-5f2a") == "token ***"  # registered for log masking


def test_stopped_server_fails_within_seconds(sandbox: Sandbox) -> None:
    with Sandbox() as stopped:
        block = jira_block(stopped.base_url)

    with recorded_sleeps() as waits, pytest.raises(ServiceError) as raised:
        block.get_client(block_name="sandbox-jira")

    assert len(waits) == 3  # four attempts, then the failure: reported in seconds
    assert raised.value.transient
    assert "Jira block 'sandbox-jira': cannot reach http://127.0.0.1:" in str(raised.value)


def test_a_hanging_server_hits_the_read_timeout(sandbox: Sandbox, core) -> None:
    core.inject_fault(kind="hang", seconds=0.6, path="/serverInfo$", count=2)
    block = jira_block(sandbox.base_url, timeout_seconds=0.3, max_retries=1)

    with recorded_sleeps() as waits, pytest.raises(ServiceError) as raised:
        block.get_client(block_name="sandbox-jira")

    assert len(waits) == 1  # max_retries=1: one retry after the first timeout
    assert str(raised.value) == "Jira block 'sandbox-jira': no answer within 0.3s (ReadTimeout)"
    assert raised.value.transient


def test_transient_failures_are_retried_then_succeed(sandbox: Sandbox, core) -> None:
    core.inject_fault(503, path="/serverInfo$", count=2)

    client = jira_block(sandbox.base_url).get_client()

    assert client.deploymentType == "Cloud"
    assert [r.status for r in core.requests] == [503, 503, 200]


def test_retries_are_bounded_by_max_retries(sandbox: Sandbox, core) -> None:
    core.inject_fault(500, path="/serverInfo$", count=None)

    with pytest.raises(ServiceError) as raised:
        jira_block(sandbox.base_url, max_retries=2).get_client(block_name="b")

    assert raised.value.status == 500
    assert "Internal error (injected by the moltbot sandbox)." in str(raised.value)
    assert core.count("GET", "/serverInfo$") == 3


def test_retries_default_to_the_project_setting(
    sandbox: Sandbox, core, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLTBOT_RETRY_ATTEMPTS", "2")
    core.inject_fault(503, path="/serverInfo$", count=None)

    with pytest.raises(ServiceError):
        jira_block(sandbox.base_url).get_client()

    assert core.count("GET", "/serverInfo$") == 2


def test_label_names_the_block() -> None:
    block = jira_block("https://example.atlassian.net")

    assert block.label() == "Jira block for example.atlassian.net"
    assert block.label("ops-jira") == "Jira block 'ops-jira'"


def test_request_may_have_applied() -> None:
    answered_500 = JIRAError("boom", status_code=500)
    answered_429 = JIRAError("slow down", status_code=429)
    lost = requests.ConnectionError("Connection aborted.")  # not a refused connect

    assert request_may_have_applied(answered_500)
    assert not request_may_have_applied(answered_429)
    assert request_may_have_applied(requests.ReadTimeout())
    assert not request_may_have_applied(requests.ConnectTimeout())
    assert request_may_have_applied(lost)
    assert not request_may_have_applied(ValueError())


def test_refused_connection_never_reached_the_server() -> None:
    with Sandbox() as stopped:
        url = f"{stopped.base_url}/jira/rest/api/2/issue"

    with pytest.raises(requests.ConnectionError) as raised:
        requests.post(url, json={}, timeout=2)

    assert not request_may_have_applied(raised.value)


@pytest.mark.slow
def test_saved_block_loads_and_names_itself(prefect_api: str, sandbox: Sandbox) -> None:
    jira_block(sandbox.base_url).save("test-jira-block", overwrite=True)
    jira_block(sandbox.base_url, api_token="bad-token-77").save("test-jira-bad", overwrite=True)

    loaded = JiraCredentials.load("test-jira-block")
    bad = JiraCredentials.load("test-jira-bad")

    assert loaded.get_client().myself()["emailAddress"] == SANDBOX_JIRA_EMAIL
    with pytest.raises(ServiceError, match=r"^Jira block 'test-jira-bad': 401 "):
        bad.get_client()
