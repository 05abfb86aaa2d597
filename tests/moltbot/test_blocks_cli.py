"""`moltbot blocks register` and `moltbot blocks list`: every block type, never a secret shown."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from moltbot.blockdocs import moltbot_block_types
from moltbot.cli import app

runner = CliRunner()


def test_every_exported_block_type_is_registered(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    result = runner.invoke(app, ["blocks", "register"])

    assert result.exit_code == 0, result.output
    slugs = [line.removeprefix("registered ") for line in result.stdout.splitlines()]
    assert slugs == [block_type.get_block_type_slug() for block_type in moltbot_block_types()]
    assert {
        "moltbot-google-sheets-credentials",
        "moltbot-notion-credentials",
        "moltbot-jira-credentials",
        "moltbot-slack-incoming-webhook",
        "moltbot-email-channel",
        "moltbot-outbox-channel",
    } <= set(slugs)
    with get_client(sync_client=True) as client:
        for slug in slugs:
            assert client.read_block_type_by_slug(slug).slug == slug


def test_list_shows_name_type_and_target_but_no_secret(prefect_api: str) -> None:
    from blocks import JiraCredentials, NotionCredentials, OutboxChannel

    NotionCredentials(token="secret_listed_token", base_url="http://127.0.0.1:9/notion").save(
        "list-notion", overwrite=True
    )
    JiraCredentials(
        server_url="https://jira.example.invalid", email="ops@example.com", api_token="jira-pw"
    ).save("list-jira", overwrite=True)
    OutboxChannel(folder="/tmp/outbox-보고서").save("list-outbox", overwrite=True)

    listed = runner.invoke(app, ["blocks", "list", "--json"])
    table = runner.invoke(app, ["blocks", "list"], env={"COLUMNS": "250"})

    assert listed.exit_code == 0, listed.output
    documents = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    notion = documents["list-notion"]
    assert {name: notion[name] for name in ("name", "type", "target")} == {
        "name": "list-notion",
        "type": "moltbot-notion-credentials",
        "target": "http://127.0.0.1:9/notion",
    }
    assert (notion["secret_set_from"], notion["secret_age_days"], notion["rotate_secret"]) == (
        "stamp",
        0,
        False,
    )
    assert (
        documents["list-outbox"]["secret_set_at"],
        documents["list-outbox"]["secret_age_days"],
    ) == (
        None,
        None,
    )
    assert documents["list-jira"]["target"] == "https://jira.example.invalid"
    assert documents["list-outbox"]["target"] == "/tmp/outbox-보고서"
    assert table.exit_code == 0
    assert "list-notion" in table.stdout
    for output in (listed.output, table.output):
        assert "secret_listed_token" not in output
        assert "jira-pw" not in output


def _document(name: str, slug: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_block_document_by_name(name, slug, include_secrets=True)


def _edit_as_the_ui(name: str, slug: str, data: dict[str, Any], *, merge: bool = True) -> None:
    """Change a saved document the way the Prefect UI's form does (a PATCH of its data)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentUpdate

    document = _document(name, slug)
    with get_client(sync_client=True) as client:
        client.update_block_document(
            document.id, BlockDocumentUpdate(data=data, merge_existing_data=merge)
        )


def _listed(name: str, *arguments: str) -> dict[str, Any]:
    result = runner.invoke(app, ["blocks", "list", "--json", *arguments])
    assert result.exit_code == 0, result.output
    [entry] = [entry for entry in json.loads(result.stdout) if entry["name"] == name]
    return entry


def test_saving_stamps_a_new_secret_and_keeps_the_stamp_while_the_secret_is_unchanged(
    prefect_api: str,
) -> None:
    from pydantic import SecretStr

    from blocks import NotionCredentials

    name = f"rotation-{uuid.uuid4().hex[:8]}"
    NotionCredentials(token="ntn_first", base_url="http://127.0.0.1:9/notion").save(name)
    first = NotionCredentials.load(name).secret_set_at
    # A new URL with the same token (a script saving the block again): the secret's age stays.
    NotionCredentials(token="ntn_first", base_url="http://127.0.0.1:10/notion").save(
        name, overwrite=True
    )
    moved = NotionCredentials.load(name)
    moved_stamp = moved.secret_set_at
    # A new token on the loaded block: a new age.
    moved.token = SecretStr("ntn_second")
    moved.save(overwrite=True)
    rotated = NotionCredentials.load(name)
    # The async save stamps the same way.
    asyncio.run(
        NotionCredentials(token="ntn_second", base_url="http://127.0.0.1:11/notion").asave(
            name, overwrite=True
        )
    )

    assert first is not None and first.tzinfo is not None
    assert (moved.base_url, moved_stamp) == ("http://127.0.0.1:10/notion", first)
    assert rotated.token.get_secret_value() == "ntn_second"
    assert rotated.secret_set_at is not None and rotated.secret_set_at > first
    assert NotionCredentials.load(name).secret_set_at == rotated.secret_set_at
    listed = _listed(name)
    assert listed["secret_set_at"] == rotated.secret_set_at.isoformat(timespec="seconds")
    assert listed["secret_set_from"] == "stamp"


def test_a_secret_older_than_the_rotation_days_is_flagged(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blocks import JiraCredentials

    name = f"rotation-old-{uuid.uuid4().hex[:8]}"
    JiraCredentials(server_url="https://jira.example.invalid", email="bot@example.com",
                    api_token="old-token").save(name)  # fmt: skip
    set_long_ago = datetime.now(UTC) - timedelta(days=200)
    _edit_as_the_ui(name, "moltbot-jira-credentials", {"secret_set_at": set_long_ago.isoformat()})

    flagged = _listed(name)
    table = runner.invoke(app, ["blocks", "list"], env={"COLUMNS": "250"})
    monkeypatch.setenv("MOLTBOT_SECRET_ROTATION_DAYS", "365")
    tolerated = _listed(name)

    assert (flagged["secret_age_days"], flagged["rotate_secret"]) == (200, True)
    assert table.exit_code == 0, table.output
    [row] = [line for line in table.stdout.splitlines() if name in line]
    assert "200 d: rotate" in row
    assert "older than 90 days (MOLTBOT_SECRET_ROTATION_DAYS)" in table.stdout
    assert "old-token" not in table.output + json.dumps(flagged)
    assert (tolerated["secret_age_days"], tolerated["rotate_secret"]) == (200, False)


def test_a_document_saved_without_a_stamp_is_aged_by_its_last_update(prefect_api: str) -> None:
    from blocks import SlackIncomingWebhook

    name = f"rotation-ui-{uuid.uuid4().hex[:8]}"
    slug = "moltbot-slack-incoming-webhook"
    SlackIncomingWebhook(url="https://hooks.slack.com/services/T0/B0/first").save(name)
    # Saved from the UI form without a stamp (or by a moltbot that kept none).
    data = {key: value for key, value in _document(name, slug).data.items()}
    del data["secret_set_at"]
    _edit_as_the_ui(name, slug, data, merge=False)
    edited = _document(name, slug)

    listed = _listed(name)
    table = runner.invoke(app, ["blocks", "list"], env={"COLUMNS": "250"})
    # Saving the same secret again from Python keeps that age rather than starting a new one.
    SlackIncomingWebhook(url="https://hooks.slack.com/services/T0/B0/first").save(
        name, overwrite=True
    )

    assert "secret_set_at" not in edited.data
    assert listed["secret_set_from"] == "document"
    assert listed["secret_set_at"] == edited.updated.isoformat(timespec="seconds")
    [row] = [line for line in table.stdout.splitlines() if name in line]
    assert "≥0 d" in row
    assert SlackIncomingWebhook.load(name).secret_set_at == edited.updated


def test_blocks_without_a_secret_have_no_age(prefect_api: str) -> None:
    from blocks import EmailChannel, OutboxChannel

    email, outbox = (f"rotation-none-{uuid.uuid4().hex[:8]}" for _ in range(2))
    EmailChannel(smtp_host="127.0.0.1", smtp_port=2525, tls="none", sender="a@example.com",
                 recipients=["b@example.com"]).save(email)  # fmt: skip
    OutboxChannel(folder="/tmp/rotation").save(outbox)

    for name in (email, outbox):
        listed = _listed(name)
        assert (listed["secret_set_at"], listed["secret_age_days"]) == (None, None), name
        assert listed["rotate_secret"] is False
