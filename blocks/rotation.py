"""When a block's secret was last set: its `secret_set_at` field, stamped on save."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from pydantic import Field

if TYPE_CHECKING:
    from prefect.client.schemas.objects import BlockDocument

SECRET_SET_AT = "secret_set_at"

SecretSetAt = Annotated[
    datetime | None,
    Field(
        description="When the secret was last set (UTC). Saving the block from Python sets it "
        "whenever the secret differs from the saved one; set it yourself when you change the "
        "secret in the Prefect UI.",
    ),
]
"""The type of the `secret_set_at` field every block with a secret declares (default None)."""


# Each block class's JSON schema by the arguments it was asked with; see `model_json_schema`.
_SCHEMAS: dict[tuple[Any, ...], dict[str, Any]] = {}


class SecretStamped:
    """Mixin for blocks with secrets: `save` stamps `secret_set_at` when the secret changes.

    Before saving, the saved document of the same name is read with its secrets: if they equal
    this block's, its stamp is kept (or, for a document saved without one, e.g. from the
    Prefect UI, the time it was last updated); otherwise, or when there is no such document, the
    stamp is now. So re-saving a block to change its URL keeps the age of its secret, and a new
    token starts a new age. Put it before `Block` among the bases.
    """

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """`Block.model_json_schema`, built once per class and arguments; a copy each call.

        Prefect rebuilds the whole schema for every field each time it serializes a block (to
        see whether the field holds a secret): ~1 ms of CPU per field, on every save and every
        task that takes the block as a parameter. The schema depends on the class alone.
        """
        key = (cls, args, tuple(sorted(kwargs.items())))
        try:
            schema = _SCHEMAS.get(key)
        except TypeError:  # unhashable arguments: not worth a cache
            return super().model_json_schema(*args, **kwargs)  # type: ignore[misc]
        if schema is None:
            schema = _SCHEMAS[key] = super().model_json_schema(*args, **kwargs)  # type: ignore[misc]
        return copy.deepcopy(schema)

    def save(
        self, name: str | None = None, overwrite: bool = False, client: Any = None, **kwargs: Any
    ) -> UUID:
        """Stamp `secret_set_at` (see the class docstring), then `Block.save`."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        document_name = name or getattr(self, "_block_document_name", None)
        if document_name is not None:
            with get_client(sync_client=True) as sync_client:
                try:
                    saved = sync_client.read_block_document_by_name(
                        name=document_name,
                        block_type_slug=self.get_block_type_slug(),
                        include_secrets=True,
                    )
                except ObjectNotFound:
                    saved = None
            self.secret_set_at = self._stamp_against(saved)
        return super().save(name, overwrite=overwrite, client=client, **kwargs)

    async def asave(
        self, name: str | None = None, overwrite: bool = False, client: Any = None
    ) -> UUID:
        """Stamp `secret_set_at` (see the class docstring), then `Block.asave`."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        document_name = name or getattr(self, "_block_document_name", None)
        if document_name is not None:
            async with get_client() as async_client:
                try:
                    saved = await async_client.read_block_document_by_name(
                        name=document_name,
                        block_type_slug=self.get_block_type_slug(),
                        include_secrets=True,
                    )
                except ObjectNotFound:
                    saved = None
            self.secret_set_at = self._stamp_against(saved)
        return await super().asave(name, overwrite=overwrite, client=client)

    def _stamp_against(self, saved: BlockDocument | None) -> datetime:
        """The stamp to save: the saved one while the secret is unchanged, else now."""
        fields = _own_secret_fields(self)
        current = self.model_dump(mode="json", context={"include_secrets": True})
        if saved is None or any(current.get(f) != saved.data.get(f) for f in fields):
            return datetime.now(UTC)
        stamp = saved.data.get(SECRET_SET_AT)
        if stamp:
            return _aware(datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp)
        # Saved without a stamp (the UI, or before moltbot kept one): its last update is the
        # latest the secret can have been set.
        return _aware(saved.updated) if saved.updated else datetime.now(UTC)


def secret_fields(document: BlockDocument) -> list[str]:
    """The top-level names of the document's secret fields (from its block schema)."""
    schema = document.block_schema.fields if document.block_schema else {}
    return sorted({path.split(".", 1)[0] for path in schema.get("secret_fields", [])})


def secret_set_at(document: BlockDocument) -> tuple[datetime | None, str | None]:
    """When the document's secret was last set, and how that is known.

    Returns:
        ``(stamp, "stamp")`` from its `secret_set_at` field; ``(updated, "document")``, the
        document's last update (any field's), for one saved without a stamp; ``(None, None)``
        when it holds no secret (no secret field, or all of them empty).
    """
    if not any(document.data.get(field) is not None for field in secret_fields(document)):
        return None, None
    stamp = document.data.get(SECRET_SET_AT)
    if stamp:
        return _aware(datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp), "stamp"
    if document.updated is None:
        return None, None
    return _aware(document.updated), "document"


def _own_secret_fields(block: Any) -> set[str]:
    """The top-level names of the block class's secret fields."""
    return {path.split(".", 1)[0] for path in block.model_json_schema().get("secret_fields", [])}


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def secret_age_days(set_at: datetime | None, *, now: datetime) -> int | None:
    """Whole days from `set_at` to `now` (None when the block holds no secret)."""
    if set_at is None:
        return None
    return max(0, (now - set_at).days)
