"""Tasks that publish run outcomes as Prefect artifacts on the flow run page."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE


@task(name="publish-markdown", cache_policy=NO_CACHE)
def publish_markdown(key: str, markdown: str, description: str | None = None) -> str:
    """Publish a markdown artifact under `key` (lowercase, digits, dashes); return its id."""
    return str(create_markdown_artifact(markdown=markdown, key=key, description=description))


@task(name="publish-table", cache_policy=NO_CACHE)
def publish_table(key: str, rows: list[dict[str, Any]], description: str | None = None) -> str:
    """Publish a table artifact of `rows` under `key`; return its id."""
    return str(create_table_artifact(table=rows, key=key, description=description))
