"""JiraCredentials against the Jira emulator: client, error messages, timeouts, saved blocks."""

from __future__ import annotations

import copy

import pytest
import requests
from jira import JIRA, JIRAError
from pydantic import SecretStr

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


def myself(block: JiraCredentials, name: str | None = "sandbox-jira") -> dict:
    """One request through the block: its client's ``GET myself``, with the block's retries."""
    client = block.get_client(block_name=name)
    return block.call(client.myself, action="myself", block_name=name)


def test_get_client_is_a_cloud_client_without_any_request(sandbox: Sandbox, core) -> None:
    client = jira_block(sandbox.base_url).get_client(block_name="sandbox-jira")

    assert isinstance(client, JIRA)
    assert client.deploymentType == "Cloud"  # stated, not read: search/jql is used
    assert client._session.max_retries == 0  # our retries only, see JiraCredentials
    assert client._session.timeout == (5.0, 10.0)
    assert core.requests == []


def test_the_client_is_built_once_per_block_and_again_when_its_fields_change(
    sandbox: Sandbox, core
) -> None:
    block = jira_block(sandbox.base_url)
    client = block.get_client()

    assert block.get_client(block_name="other name") is client
    assert block.model_copy(update={"max_retries": 0}).get_client() is client  # not in it
    assert copy.deepcopy(block).get_client() is not client  # a copy starts empty
    assert copy.deepcopy(block) == block  # the cached client is not part of the value
    block.timeout_seconds = 3.0
    rebuilt = block.get_client()
    assert rebuilt is not client and rebuilt._session.timeout == (3.0, 3.0)
    block.api_token = SecretStr("another-token-31")
    assert block.get_client() is not rebuilt
    assert core.requests == []


def test_wrong_token_is_a_clear_permanent_error_naming_the_block(sandbox: Sandbox, core) -> None:
    block = jira_block(sandbox.base_url, api_token="wrong-token-5f2a")

    with pytest.raises(ServiceError) as raised:
        myself(block)

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
        myself(block)

    assert len(waits) == 3  # four attempts, then the failure: reported in seconds
    assert raised.value.transient
    assert "Jira block 'sandbox-jira': cannot reach http://127.0.0.1:" in str(raised.value)


def test_a_hanging_server_hits_the_read_timeout(sandbox: Sandbox, core) -> None:
    core.inject_fault(kind="hang", seconds=0.6, path="/myself$", count=2)
    block = jira_block(sandbox.base_url, timeout_seconds=0.3, max_retries=1)

    with recorded_sleeps() as waits, pytest.raises(ServiceError) as raised:
        myself(block)

    assert len(waits) == 1  # max_retries=1: one retry after the first timeout
    assert str(raised.value) == "Jira block 'sandbox-jira': no answer within 0.3s (ReadTimeout)"
    assert raised.value.transient


def test_transient_failures_are_retried_then_succeed(sandbox: Sandbox, core) -> None:
    core.inject_fault(503, path="/myself$", count=2)

    assert myself(jira_block(sandbox.base_url), None)["emailAddress"] == SANDBOX_JIRA_EMAIL

    assert [r.status for r in core.requests] == [503, 503, 200]


def test_retries_are_bounded_by_max_retries(sandbox: Sandbox, core) -> None:
    core.inject_fault(500, path="/myself$", count=None)

    with pytest.raises(ServiceError) as raised:
        myself(jira_block(sandbox.base_url, max_retries=2), "b")

    assert raised.value.status == 500
    assert "Internal error (injected by the moltbot sandbox)." in str(raised.value)
    assert core.count("GET", "/myself$") == 3


def test_retries_default_to_the_project_setting(
    sandbox: Sandbox, core, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLTBOT_RETRY_ATTEMPTS", "2")
    core.inject_fault(503, path="/myself$", count=None)

    with pytest.raises(ServiceError):
        myself(jira_block(sandbox.base_url), None)

    assert core.count("GET", "/myself$") == 2


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
        myself(bad, None)
