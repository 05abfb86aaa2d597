"""Tasks that publish run outcomes as Prefect artifacts on the flow run page."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE


@task(name="publish-markdown", cache_policy=NO_CACHE)
def publish_markdown(key: str | None, markdown: str, description: str | None = None) -> str:
    """Publish a markdown artifact; return its id.

    Args:
        key: lowercase letters, digits and dashes; keyed artifacts are versioned in the UI's
            Artifacts page. None shows it on the run page only (e.g. for a dry run).
        markdown: the content.
        description: a one-line caption.
    """
    return str(create_markdown_artifact(markdown=markdown, key=key, description=description))


@task(name="publish-table", cache_policy=NO_CACHE)
def publish_table(
    key: str | None, rows: list[dict[str, Any]], description: str | None = None
) -> str:
    """Publish a table artifact of `rows` (see `publish_markdown` for `key`); return its id."""
    return str(create_table_artifact(table=rows, key=key, description=description))
