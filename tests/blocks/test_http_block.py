"""The HttpHeaders block: saved and loaded with secret values, masked once unwrapped."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from blocks import HttpHeaders
from moltbot.blockdocs import load_block
from moltbot.masking import mask_text


def test_values_are_secret_in_the_api_and_masked_once_unwrapped(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    token = "Bearer zq8-health-7c1d0b9e44"
    HttpHeaders(headers={"Authorization": token, "X-Team": "ops-team-42"}).save(
        "test-http-headers", overwrite=True
    )

    loaded = load_block(HttpHeaders, "test-http-headers")
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "test-http-headers", block_type_slug="moltbot-http-headers", include_secrets=False
        )

    assert token not in str(document.data) and "ops-team-42" not in str(document.data)
    assert token not in repr(loaded) and loaded.secret_set_at is not None
    assert loaded.header_values() == {"Authorization": token, "X-Team": "ops-team-42"}
    # Every value, whatever its header is called.
    assert mask_text(f"sent {token} and ops-team-42") == "sent *** and ***"


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Bad Name": "secret-value-1"}, "a header name is letters"),
        ({"X-Key": "secret\nvalue-2"}, "header X-Key: the value must be one line"),
    ],
)
def test_a_bad_header_is_refused_without_its_value(headers: dict, problem: str) -> None:
    with pytest.raises(ValidationError) as raised:
        HttpHeaders(headers=headers)

    assert problem in str(raised.value)
    assert "secret" not in str(raised.value)
