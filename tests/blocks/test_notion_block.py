"""NotionCredentials: the real notion-client it builds, its timeout and retry options, saving."""

from __future__ import annotations

import pytest
from notion_client import APIResponseError
from notion_client.client import RetryOptions
from notion_client.errors import RequestTimeoutError

from blocks.notion import NotionCredentials
from moltbot.masking import mask_text
from moltbot.sandbox import Sandbox
from moltbot.sandbox.notion import SANDBOX_DIGEST_DATABASE_ID, NotionState
from tests.sandbox.helpers import notion_block


@pytest.fixture
def notion(sandbox: Sandbox) -> NotionState:
    return sandbox.state.notion


def logged(notion: NotionState) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in notion.core.requests]


def test_client_talks_to_the_configured_base_url(notion_credentials: NotionCredentials):
    client = notion_credentials.get_client()

    database = client.databases.retrieve(SANDBOX_DIGEST_DATABASE_ID)

    assert database["title"][0]["plain_text"] == "moltbot digests"
    assert str(client.client.base_url) == f"{notion_credentials.base_url}/v1/"
    assert client.client.headers["Notion-Version"] == "2025-09-03"


def test_defaults_point_at_the_real_api_with_a_bounded_timeout():
    credentials = NotionCredentials(token="ntn_example")

    client = credentials.get_client()

    assert credentials.base_url == "https://api.notion.com"
    assert str(client.client.base_url) == "https://api.notion.com/v1/"
    assert client.client.timeout.read == 30.0 and client.client.timeout.connect == 30.0


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/ "])
def test_base_url_without_v1_or_trailing_slash(suffix: str):
    given = f"http://127.0.0.1:8765/notion{suffix}"

    assert NotionCredentials(token="t", base_url=given).base_url == "http://127.0.0.1:8765/notion"


def test_token_is_secret_and_masked_once_a_client_is_built():
    credentials = NotionCredentials(token="ntn_block-test-secret-123")

    assert "ntn_block-test-secret-123" not in repr(credentials)
    credentials.get_client()

    assert mask_text("token was ntn_block-test-secret-123") == "token was ***"


def test_client_retries_are_off_by_default(
    notion_credentials: NotionCredentials, notion: NotionState
):
    notion.core.inject_fault(429, retry_after=0)

    with pytest.raises(APIResponseError) as refused:
        notion_credentials.get_client().users.me()

    assert refused.value.code == "rate_limited"
    assert logged(notion) == [("/v1/users/me", 429)]


def test_client_retry_options_are_passed_through(
    notion_credentials: NotionCredentials, notion: NotionState
):
    notion.core.inject_fault(429, retry_after=1)
    # The cap also shortens Retry-After, so this retry waits 10 ms, not 1 s.
    retry = RetryOptions(max_retries=1, initial_retry_delay_ms=10, max_retry_delay_ms=10)

    me = notion_credentials.get_client(retry=retry).users.me()

    assert me["type"] == "bot"
    assert logged(notion) == [("/v1/users/me", 429), ("/v1/users/me", 200)]


def test_timeout_bounds_a_hanging_request(sandbox: Sandbox, notion: NotionState):
    credentials = notion_block(sandbox.base_url, timeout_seconds=0.3)
    notion.core.inject_fault(kind="hang", seconds=0.8)

    with pytest.raises(RequestTimeoutError):
        credentials.get_client().users.me()

    # The client gave up at its timeout: the emulator still holds the request.
    assert notion.core.count() == 0


def test_display_name_prefers_the_given_then_the_saved_name():
    credentials = NotionCredentials(token="t")

    assert credentials.display_name() == "unsaved"
    assert credentials.display_name("team-notion") == "team-notion"


@pytest.mark.slow
def test_saved_block_loads_with_its_name_and_hides_the_token(prefect_api: str, sandbox: Sandbox):
    from prefect.client.orchestration import get_client

    NotionCredentials(
        token="ntn_saved-secret-456", base_url=f"{sandbox.base_url}/notion", timeout_seconds=5
    ).save("test-notion", overwrite=True)

    loaded = NotionCredentials.load("test-notion")

    assert loaded.token.get_secret_value() == "ntn_saved-secret-456"
    assert loaded.timeout_seconds == 5
    assert loaded.display_name() == "test-notion"
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "test-notion", "moltbot-notion-credentials", include_secrets=False
        )
    assert "ntn_saved-secret-456" not in str(document.data)
