"""`moltbot blocks register` and `moltbot blocks list`: every block type, never a secret shown."""

from __future__ import annotations

import json

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
        server_url="https://example.atlassian.net", email="ops@example.com", api_token="jira-pw"
    ).save("list-jira", overwrite=True)
    OutboxChannel(folder="/tmp/outbox-보고서").save("list-outbox", overwrite=True)

    listed = runner.invoke(app, ["blocks", "list", "--json"])
    table = runner.invoke(app, ["blocks", "list"])

    assert listed.exit_code == 0, listed.output
    documents = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    assert documents["list-notion"] == {
        "name": "list-notion",
        "type": "moltbot-notion-credentials",
        "target": "http://127.0.0.1:9/notion",
    }
    assert documents["list-jira"]["target"] == "https://example.atlassian.net"
    assert documents["list-outbox"]["target"] == "/tmp/outbox-보고서"
    assert table.exit_code == 0
    assert "list-notion" in table.stdout
    for output in (listed.output, table.output):
        assert "secret_listed_token" not in output
        assert "jira-pw" not in output
