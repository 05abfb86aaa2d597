"""Webhook source block: the signing secret and signature scheme of one inbound webhook sender."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.masking import register_model_secrets


class WebhookSource(SecretStamped, Block):
    """How the webhook gateway verifies one sender's requests (`POST /hooks/<source>`).

    The gateway loads each configured source's block once at start-up, so requests stay
    verifiable while the Prefect API is down; with `MOLTBOT_SECRET_CACHE_KEY` set it also keeps
    an encrypted copy, so it can start while the API is down. The secret is registered with the
    log masker as soon as the block is loaded or built.

    Attributes:
        signing_secret: the shared secret the sender signs with (Stripe's `whsec_…`, the
            GitHub webhook secret).
        scheme: `stripe` (`Stripe-Signature: t=…,v1=…`, HMAC-SHA256 over `"{t}.{body}"`, with a
            timestamp tolerance) or `github` (`X-Hub-Signature-256: sha256=…` over the body).
    """

    _block_type_name = "Webhook Source"
    _block_type_slug = "moltbot-webhook-source"
    _description = "moltbot: the signing secret and signature scheme of an inbound webhook sender."

    signing_secret: SecretStr = Field(description="Secret the sender signs its requests with.")
    scheme: Literal["stripe", "github"] = Field(
        description="Signature scheme: 'stripe' (t=…,v1=… with a timestamp) or 'github' "
        "(X-Hub-Signature-256: sha256=…)."
    )
    secret_set_at: SecretSetAt = None

    def block_initialization(self) -> None:
        """Register the secret with the log masker (runs when the block is loaded or built)."""
        register_model_secrets(self)
