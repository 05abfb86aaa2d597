"""moltbot's block types in the Prefect API: registering them and listing saved documents."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from prefect.blocks.core import Block
    from prefect.client.schemas.objects import BlockDocument

# Documents per filtered request (the API caps a page at its default limit, 200).
_PAGE = 200

# The field that says where a block points, in the order they are tried; none is a secret.
_TARGET_FIELDS = ("server_url", "base_url", "api_base_url", "api_base", "smtp_host", "folder")


def moltbot_block_types() -> list[type[Block]]:
    """Every block class `blocks/__init__.py` exports, in its order."""
    from prefect.blocks.core import Block

    import blocks

    exported = (getattr(blocks, name) for name in blocks.__all__)
    return [item for item in exported if isinstance(item, type) and issubclass(item, Block)]


def register_block_types() -> list[str]:
    """Register every moltbot block type and schema with the Prefect API; return their slugs."""
    slugs = []
    for block_type in moltbot_block_types():
        block_type.register_type_and_schema()
        slugs.append(block_type.get_block_type_slug())
    return slugs


def saved_block_documents(
    block_types: Iterable[type[Block]],
    names: Iterable[str] | None = None,
    include_secrets: bool = False,
) -> list[BlockDocument]:
    """Saved documents of the given block types (only those called one of `names` when given),
    secrets left out unless `include_secrets`; unregistered types have none.

    One filtered request per page of the API's limit, whatever the number of types: looking a
    name up type by type cost a request per type (ten for a channel name).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import BlockDocument
    from pydantic import TypeAdapter

    slugs = [block_type.get_block_type_slug() for block_type in block_types]
    if not slugs:
        return []
    # Named documents only: a block saved inside another (anonymous) is not one of them.
    documents: dict[str, Any] = {"is_anonymous": {"eq_": False}}
    if names is not None:
        documents["name"] = {"any_": list(names)}
    body: dict[str, Any] = {
        "block_documents": documents,
        "block_types": {"slug": {"any_": slugs}},
        "include_secrets": include_secrets,
        "limit": _PAGE,
    }
    documents_of = TypeAdapter(list[BlockDocument])
    found: list[BlockDocument] = []
    with get_client(sync_client=True) as client:
        while True:
            response = client.request(
                "POST", "/block_documents/filter", json={**body, "offset": len(found)}
            )
            page = documents_of.validate_python(response.json())
            found.extend(page)
            if len(page) < _PAGE:
                break
    return [document for document in found if document.name]


def _target(data: dict[str, Any]) -> str | None:
    for field in _TARGET_FIELDS:
        value = data.get(field)
        if isinstance(value, str) and value:
            if field == "smtp_host" and data.get("smtp_port"):
                return f"smtp://{value}:{data['smtp_port']}"
            return value
    return None


def saved_blocks() -> list[dict[str, str | None]]:
    """Name, type slug, (non-secret) target and when the secret was set (`blocks.rotation`:
    from the block's stamp or, lacking one, the document's last update) of every saved moltbot
    block, sorted by name."""
    from blocks.rotation import secret_set_at

    documents = saved_block_documents(moltbot_block_types())
    listed = []
    for document in documents:
        set_at, set_from = secret_set_at(document)
        listed.append(
            {
                "name": document.name,
                "type": document.block_type.slug if document.block_type else None,
                "target": _target(document.data),
                "secret_set_at": set_at.isoformat(timespec="seconds") if set_at else None,
                "secret_set_from": set_from,
            }
        )
    return sorted(listed, key=lambda entry: (entry["name"] or "", entry["type"] or ""))


def save_block_document(block: Block, name: str) -> bool:
    """Save `block` as the document `name` (overwriting), unless that document already holds
    the same values under the same schema; True when it wrote.

    Prefect's save registers the type and schema and then creates, or reads and updates, the
    document: five or six requests. Re-saving what is already there (the sandbox's and the
    demo's blocks, on every start) costs one read this way.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    block_type = type(block)
    try:
        with get_client(sync_client=True) as client:
            saved = client.read_block_document_by_name(
                name, block_type.get_block_type_slug(), include_secrets=True
            )
        same_schema = (
            saved.block_schema is not None
            and saved.block_schema.checksum == block_type._calculate_schema_checksum()
        )
        unchanged = same_schema and _field_values(
            block_type._load_from_block_document(saved)
        ) == _field_values(block)
    except (ObjectNotFound, ValueError):
        unchanged = False  # not saved yet, or saved values this class no longer reads
    if not unchanged:
        block.save(name, overwrite=True)
    return not unchanged


def _field_values(block: Block) -> dict[str, Any]:
    """The block's field values (secrets compare by value) without the secret's stamp: a save
    with the same secret keeps the saved stamp (`blocks.rotation`), and so does skipping it."""
    from blocks.rotation import SECRET_SET_AT

    names = [name for name in type(block).model_fields if name != SECRET_SET_AT]
    return {name: getattr(block, name) for name in names}


BlockT = TypeVar("BlockT", bound="Block")


def load_block(block_type: type[BlockT], name: str) -> BlockT:
    """Load the saved `block_type` document `name`, its secrets registered with the log masker.

    Raises:
        InputError: no such document, with the names that do exist.
    """
    from moltbot.errors import InputError
    from moltbot.masking import register_model_secrets

    try:
        block = block_type.load(name)
    except ValueError:
        saved = sorted(document.name for document in saved_block_documents([block_type]))
        kind = block_type.get_block_type_name()
        choices = f"saved: {', '.join(saved)}" if saved else "none is saved"
        raise InputError(f"unknown {kind} block {name!r} ({choices})") from None
    register_model_secrets(block)
    return block
