"""The gateway's signing secrets without Prefect: an env var per source, the encrypted cache."""

from __future__ import annotations

import socket
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from prefect.settings import PREFECT_API_URL
from prefect.settings.context import temporary_settings
from pydantic import SecretStr

from blocks.webhooks import WebhookSource
from moltbot.errors import InputError, ServiceError
from moltbot.masking import mask_text
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.secrets import (
    CACHE_FILE_NAME,
    GatewaySecrets,
    SecretCache,
    load_gateway_secrets,
)


@contextmanager
def prefect_down() -> Iterator[None]:
    """The Prefect API address points at a port nobody listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/api"
    with temporary_settings(updates={PREFECT_API_URL: closed}):
        yield


@pytest.fixture
def saved(prefect_api: str) -> dict[str, str]:
    """Two WebhookSource blocks in the Prefect API; their names and secrets."""
    suffix = uuid.uuid4().hex[:8]
    blocks = {
        "stripe_block": f"webhook-stripe-{suffix}",
        "github_block": f"webhook-github-{suffix}",
        "stripe_secret": f"whsec_{uuid.uuid4().hex}",
        "github_secret": f"gh-{uuid.uuid4().hex}",
    }
    WebhookSource(signing_secret=SecretStr(blocks["stripe_secret"]), scheme="stripe").save(
        blocks["stripe_block"]
    )
    WebhookSource(signing_secret=SecretStr(blocks["github_secret"]), scheme="github").save(
        blocks["github_block"]
    )
    return blocks


def config_for(saved: dict[str, str]) -> GatewayConfig:
    return GatewayConfig.from_table(
        {
            "sources": {
                "stripe": {"block": saved["stripe_block"], "scheme": "stripe"},
                "shop-github": {"block": saved["github_block"], "tolerance_seconds": 60},
            }
        }
    )


def secrets_of(loaded: GatewaySecrets) -> dict[str, tuple[str, str, int]]:
    return {
        name: (verifier.scheme, verifier.secret.get_secret_value(), verifier.tolerance_seconds)
        for name, verifier in loaded.verifiers.items()
    }


def test_a_start_with_prefect_up_caches_the_secrets_encrypted_for_a_start_while_it_is_down(
    saved: dict[str, str], tmp_path: Path
) -> None:
    key = Fernet.generate_key().decode()
    environ = {"MOLTBOT_SECRET_CACHE_KEY": key}
    expected = {
        "stripe": ("stripe", saved["stripe_secret"], 300),
        "shop-github": ("github", saved["github_secret"], 60),
    }

    up = load_gateway_secrets(config_for(saved), home=tmp_path, environ=environ)
    cache_file = tmp_path / CACHE_FILE_NAME
    on_disk = cache_file.read_bytes()
    with prefect_down():
        down = load_gateway_secrets(config_for(saved), home=tmp_path, environ=environ)

    assert secrets_of(up) == expected
    assert up.origins == {"stripe": "the Prefect API", "shop-github": "the Prefect API"}
    assert secrets_of(down) == expected
    assert down.origins == {
        "stripe": "the local secret cache",
        "shop-github": "the local secret cache",
    }
    [warning] = down.warnings
    assert "unreachable (ConnectError)" in warning
    assert "dispatched once the API is back" in warning
    # Never in plain text, and only the owner may read it.
    assert saved["stripe_secret"].encode() not in on_disk
    assert saved["github_secret"].encode() not in on_disk
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    assert Fernet(key.encode()).decrypt(on_disk)  # it is a token of this key


def test_a_cache_written_with_another_key_is_refused(saved: dict[str, str], tmp_path: Path) -> None:
    written_with = {"MOLTBOT_SECRET_CACHE_KEY": Fernet.generate_key().decode()}
    other_key = {"MOLTBOT_SECRET_CACHE_KEY": Fernet.generate_key().decode()}
    load_gateway_secrets(config_for(saved), home=tmp_path, environ=written_with)

    with prefect_down(), pytest.raises(InputError) as raised:
        load_gateway_secrets(config_for(saved), home=tmp_path, environ=other_key)

    assert str(raised.value) == (
        f"{tmp_path / CACHE_FILE_NAME}: MOLTBOT_SECRET_CACHE_KEY does not open the secret cache "
        "(it was written with another key, or altered)"
    )


def test_an_altered_cache_is_refused(saved: dict[str, str], tmp_path: Path) -> None:
    environ = {"MOLTBOT_SECRET_CACHE_KEY": Fernet.generate_key().decode()}
    load_gateway_secrets(config_for(saved), home=tmp_path, environ=environ)
    cache_file = tmp_path / CACHE_FILE_NAME
    token = bytearray(cache_file.read_bytes())
    token[40] = ord("A") if token[40] != ord("A") else ord("B")
    cache_file.write_bytes(bytes(token))

    with prefect_down(), pytest.raises(InputError, match="does not open the secret cache"):
        load_gateway_secrets(config_for(saved), home=tmp_path, environ=environ)


def test_a_block_the_cache_does_not_hold_stops_a_start_while_prefect_is_down(
    saved: dict[str, str], tmp_path: Path
) -> None:
    environ = {"MOLTBOT_SECRET_CACHE_KEY": Fernet.generate_key().decode()}
    load_gateway_secrets(config_for(saved), home=tmp_path, environ=environ)
    renamed = GatewayConfig.from_table({"sources": {"stripe": {"block": "webhook-stripe-new"}}})

    with prefect_down(), pytest.raises(ServiceError) as raised:
        load_gateway_secrets(renamed, home=tmp_path, environ=environ)

    assert str(raised.value).endswith(
        "the secret cache has no block webhook-stripe-new, or set MOLTBOT_WEBHOOK_SECRET_STRIPE"
    )


def test_secrets_from_the_environment_need_no_prefect_and_are_masked(tmp_path: Path) -> None:
    stripe_secret, github_secret = f"whsec_{uuid.uuid4().hex}", f"gh-{uuid.uuid4().hex}"
    config = GatewayConfig.from_table(
        {
            "sources": {
                "stripe": {"block": "unused-1", "scheme": "stripe"},
                "shop-github": {"block": "unused-2", "scheme": "github"},
            }
        }
    )
    environ = {
        "MOLTBOT_WEBHOOK_SECRET_STRIPE": stripe_secret,
        "MOLTBOT_WEBHOOK_SECRET_SHOP_GITHUB": github_secret,
    }

    with prefect_down():
        loaded = load_gateway_secrets(config, home=tmp_path, environ=environ)

    assert secrets_of(loaded) == {
        "stripe": ("stripe", stripe_secret, 300),
        "shop-github": ("github", github_secret, 300),
    }
    assert loaded.origins == {
        "stripe": "MOLTBOT_WEBHOOK_SECRET_STRIPE",
        "shop-github": "MOLTBOT_WEBHOOK_SECRET_SHOP_GITHUB",
    }
    assert mask_text(f"a {stripe_secret} b {github_secret}") == "a *** b ***"
    assert not (tmp_path / CACHE_FILE_NAME).exists()


def test_a_source_with_its_variable_set_takes_it_over_its_block(
    saved: dict[str, str], tmp_path: Path
) -> None:
    rotated = f"whsec_{uuid.uuid4().hex}"

    loaded = load_gateway_secrets(
        config_for(saved), home=tmp_path, environ={"MOLTBOT_WEBHOOK_SECRET_STRIPE": rotated}
    )

    assert secrets_of(loaded)["stripe"] == ("stripe", rotated, 300)
    assert secrets_of(loaded)["shop-github"] == ("github", saved["github_secret"], 60)
    assert loaded.origins == {
        "stripe": "MOLTBOT_WEBHOOK_SECRET_STRIPE",
        "shop-github": "the Prefect API",
    }


@pytest.mark.parametrize(
    ("sources", "environ", "problem"),
    [
        (
            {"stripe": {"block": "b", "scheme": "stripe"}},
            {"MOLTBOT_WEBHOOK_SECRET_STRIPE": "  "},
            "webhook gateway: MOLTBOT_WEBHOOK_SECRET_STRIPE is empty",
        ),
        (
            {"shop": {"block": "b"}},
            {"MOLTBOT_WEBHOOK_SECRET_SHOP": "whsec_x"},
            "webhook gateway: MOLTBOT_WEBHOOK_SECRET_SHOP is set but [webhooks.sources.shop] "
            "has no scheme to verify with",
        ),
    ],
)
def test_unusable_secret_variables_are_refused_in_one_line(
    sources: dict[str, object], environ: dict[str, str], problem: str, tmp_path: Path
) -> None:
    with pytest.raises(InputError) as raised:
        load_gateway_secrets(
            GatewayConfig.from_table({"sources": sources}), home=tmp_path, environ=environ
        )

    assert str(raised.value) == problem


def test_a_cache_key_that_is_not_a_fernet_key_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(InputError) as raised:
        SecretCache.from_environment(
            tmp_path, {"MOLTBOT_SECRET_CACHE_KEY": "correct horse battery staple"}
        )

    message = str(raised.value)
    assert message.startswith(
        "MOLTBOT_SECRET_CACHE_KEY: not a Fernet key (32 url-safe base64-encoded bytes); "
    )
    assert "horse" not in message
    assert "\n" not in message
