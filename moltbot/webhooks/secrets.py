"""Where the gateway's signing secrets come from: an env var per source, the `WebhookSource`
blocks, or the operator-keyed encrypted cache of those blocks when the Prefect API is down."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from pydantic import SecretStr

from moltbot.errors import InputError, ServiceError
from moltbot.masking import register_secret
from moltbot.webhooks.app import SourceVerifier
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.signatures import Scheme

SECRET_ENV_PREFIX = "MOLTBOT_WEBHOOK_SECRET_"
"""`MOLTBOT_WEBHOOK_SECRET_<SOURCE>` holds a source's signing secret, instead of its block."""

CACHE_KEY_ENV = "MOLTBOT_SECRET_CACHE_KEY"
"""The operator's Fernet key; when set, the blocks' secrets are cached encrypted with it."""

CACHE_FILE_NAME = "webhook-secrets.fernet"
"""The cache file, under MOLTBOT_HOME."""

_CACHE_VERSION = 1
_KEY_HINT = (
    'generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


def secret_env_name(source: str) -> str:
    """The variable holding `source`'s signing secret, e.g. `MOLTBOT_WEBHOOK_SECRET_STRIPE`."""
    return SECRET_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", source.upper())


@dataclass(frozen=True)
class BlockSecret:
    """The part of a `WebhookSource` block the gateway needs.

    Attributes:
        scheme: `stripe` or `github`.
        secret: the signing secret.
    """

    scheme: Scheme
    secret: SecretStr


class SecretCache:
    """The `WebhookSource` blocks' secrets in one file, encrypted with the operator's key.

    The file holds a Fernet token (AES-128-CBC with an HMAC-SHA256, from `cryptography`): the
    secrets are never on disk in plain text, and a file written with another key, or altered, is
    refused rather than read. It is rewritten whenever the gateway loaded the blocks from the
    Prefect API, so it holds the secrets of the last start that reached Prefect.

    Args:
        path: the cache file.
        key: a Fernet key (32 bytes, url-safe base64), kept by the operator, not on this disk.

    Raises:
        InputError: `key` is not a Fernet key.
    """

    def __init__(self, path: Path, key: SecretStr) -> None:
        from cryptography.fernet import Fernet

        register_secret(key.get_secret_value())
        try:
            self._fernet = Fernet(key.get_secret_value().strip().encode())
        except (ValueError, UnicodeEncodeError):
            raise InputError(
                f"{CACHE_KEY_ENV}: not a Fernet key (32 url-safe base64-encoded bytes); {_KEY_HINT}"
            ) from None
        self.path = path

    @classmethod
    def from_environment(
        cls, home: Path, environ: Mapping[str, str] | None = None
    ) -> SecretCache | None:
        """The cache under `home` with the key of `MOLTBOT_SECRET_CACHE_KEY`; None when unset.

        Raises:
            InputError: the variable is set but is not a Fernet key.
        """
        key = (os.environ if environ is None else environ).get(CACHE_KEY_ENV, "")
        if not key.strip():
            return None
        return cls(home / CACHE_FILE_NAME, SecretStr(key))

    def write(self, blocks: Mapping[str, BlockSecret]) -> None:
        """Replace the cache with `blocks` (block name -> scheme and secret), atomically.

        Raises:
            OSError: the file cannot be written.
        """
        document = {
            "version": _CACHE_VERSION,
            "written_at": datetime.now(UTC).isoformat(),
            "blocks": {
                name: {"scheme": block.scheme, "signing_secret": block.secret.get_secret_value()}
                for name, block in blocks.items()
            },
        }
        token = self._fernet.encrypt(json.dumps(document).encode())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary file renamed over the old one: a crash leaves the old cache whole.
        descriptor, temporary = tempfile.mkstemp(prefix=".webhook-secrets-", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "wb") as output:
                output.write(token)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def read(self) -> tuple[dict[str, BlockSecret], str | None]:
        """The cached blocks (block name -> scheme and secret) and when they were written.

        Returns:
            `({}, None)` when there is no cache file.

        Raises:
            InputError: the file was written with another key, or is damaged.
        """
        from cryptography.fernet import InvalidToken

        try:
            token = self.path.read_bytes()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise InputError(
                f"{self.path}: cannot read the secret cache ({exc.strerror})"
            ) from None
        try:
            document: Any = json.loads(self._fernet.decrypt(token))
            if document["version"] != _CACHE_VERSION:
                raise ValueError("unknown version")
            blocks = {
                name: _cached_block(entry) for name, entry in dict(document["blocks"]).items()
            }
            written_at = str(document["written_at"])
        except InvalidToken:
            raise InputError(
                f"{self.path}: {CACHE_KEY_ENV} does not open the secret cache (it was written "
                "with another key, or altered)"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{self.path}: the secret cache is damaged") from None
        for block in blocks.values():
            register_secret(block.secret.get_secret_value())
        return blocks, written_at


def _cached_block(entry: Mapping[str, Any]) -> BlockSecret:
    scheme, secret = entry["scheme"], entry["signing_secret"]
    if scheme not in get_args(Scheme) or not isinstance(secret, str) or not secret:
        raise ValueError("bad entry")
    return BlockSecret(scheme=scheme, secret=SecretStr(secret))


@dataclass(frozen=True)
class GatewaySecrets:
    """The sources' verifiers and, per source, where its secret came from.

    Attributes:
        verifiers: per source name, its scheme, secret and tolerance.
        origins: per source name, `the Prefect API`, its environment variable, or `the local
            secret cache`.
        warnings: what the operator should know (the Prefect API down, the cache not written),
            to log once logging is set up.
    """

    verifiers: dict[str, SourceVerifier]
    origins: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def load_gateway_secrets(
    config: GatewayConfig, *, home: Path, environ: Mapping[str, str] | None = None
) -> GatewaySecrets:
    """Every configured source's scheme and signing secret, without Prefect when it is down.

    A source whose `MOLTBOT_WEBHOOK_SECRET_<SOURCE>` is set takes its secret from there (its
    scheme from `[webhooks.sources]`). The others' `WebhookSource` blocks are loaded from the
    Prefect API; when that works and `MOLTBOT_SECRET_CACHE_KEY` is set, they are written to the
    encrypted cache under `home`. When the API cannot be reached, they come from that cache.

    Args:
        config: the sources.
        home: MOLTBOT_HOME, where the cache lives.
        environ: the environment to read (default: this process's).

    Raises:
        InputError: a missing or mismatched block, PREFECT_API_URL unset, an empty secret
            variable, a source without a scheme for its variable, or an unusable cache key/file.
        ServiceError: the Prefect API is unreachable and neither variables nor the cache hold
            every source's secret.
    """
    environ = os.environ if environ is None else environ
    cache = SecretCache.from_environment(home, environ)
    verifiers, origins = _from_variables(config, environ)
    from_blocks = {
        name: source.block for name, source in config.sources.items() if name not in verifiers
    }
    if not from_blocks:
        return GatewaySecrets(verifiers, origins)
    warnings: list[str] = []
    try:
        blocks = load_block_secrets(sorted(set(from_blocks.values())))
    except ServiceError as exc:
        blocks, written_at = cache.read() if cache is not None else ({}, None)
        uncached = sorted({block for block in from_blocks.values() if block not in blocks})
        if uncached:
            hint = (
                f"the secret cache has no block {', '.join(uncached)}"
                if cache is not None
                else f"set {CACHE_KEY_ENV} to keep an encrypted copy of the blocks at each start"
            )
            variables = ", ".join(secret_env_name(name) for name in from_blocks)
            raise ServiceError(f"{exc}; {hint}, or set {variables}", transient=True) from None
        origin = "the local secret cache"
        warnings.append(
            f"{exc}: the signing secrets of {', '.join(sorted(from_blocks))} come from the "
            f"local secret cache written {written_at}; webhooks are accepted, and dispatched "
            "once the API is back"
        )
    else:
        origin = "the Prefect API"
        if cache is not None:
            try:
                cache.write(blocks)
            except OSError as exc:
                warnings.append(
                    f"webhook gateway: {cache.path}: cannot write the secret cache "
                    f"({exc.strerror}); a start while the Prefect API is down will fail"
                )
    problems = []
    for name, block_name in from_blocks.items():
        block, expected = blocks[block_name], config.sources[name].scheme
        if expected is not None and expected != block.scheme:
            problems.append(
                f"source {name!r} expects scheme {expected!r} but block {block_name!r} has "
                f"{block.scheme!r}"
            )
            continue
        verifiers[name] = _verifier(config, name, block.scheme, block.secret)
        origins[name] = origin
    if problems:
        raise InputError(f"webhook gateway: {'; '.join(problems)}")
    return GatewaySecrets(verifiers, origins, warnings)


def _from_variables(
    config: GatewayConfig, environ: Mapping[str, str]
) -> tuple[dict[str, SourceVerifier], dict[str, str]]:
    verifiers: dict[str, SourceVerifier] = {}
    origins: dict[str, str] = {}
    problems: list[str] = []
    for name, source in config.sources.items():
        variable = secret_env_name(name)
        if variable not in environ:
            continue
        secret = environ[variable]
        if not secret.strip():
            problems.append(f"{variable} is empty")
        elif source.scheme is None:
            problems.append(
                f"{variable} is set but [webhooks.sources.{name}] has no scheme to verify with"
            )
        else:
            register_secret(secret)
            verifiers[name] = _verifier(config, name, source.scheme, SecretStr(secret))
            origins[name] = variable
    if problems:
        raise InputError(f"webhook gateway: {'; '.join(problems)}")
    return verifiers, origins


def load_block_secrets(names: list[str]) -> dict[str, BlockSecret]:
    """The `WebhookSource` blocks `names` from the Prefect API, their secrets registered with the
    log masker.

    Raises:
        InputError: `PREFECT_API_URL` is unset, or blocks are missing (all of them named).
        ServiceError: the Prefect API cannot be reached.
    """
    import httpx
    from prefect.settings import PREFECT_API_URL

    from blocks.webhooks import WebhookSource
    from moltbot.blockdocs import load_block

    api_url = PREFECT_API_URL.value()
    if not api_url:
        # Without it Prefect would start a private temporary server: blocks would be missing
        # and runs would go where nobody looks.
        raise InputError(
            "webhook gateway: set PREFECT_API_URL to the Prefect server it dispatches to"
        )
    blocks: dict[str, BlockSecret] = {}
    missing: list[str] = []
    for name in names:
        try:
            block = load_block(WebhookSource, name)
        except InputError:
            missing.append(name)
            continue
        except httpx.HTTPError as exc:
            raise ServiceError(
                f"webhook gateway: cannot load blocks, the Prefect API at {api_url} is "
                f"unreachable ({type(exc).__name__})",
                transient=True,
            ) from None
        blocks[name] = BlockSecret(scheme=block.scheme, secret=block.signing_secret)
    if missing:
        raise InputError(
            f"webhook gateway: missing WebhookSource block(s): {', '.join(sorted(missing))} "
            "(save one per source with WebhookSource(signing_secret=..., scheme=...).save(name), "
            "or change [webhooks.sources])"
        )
    return blocks


def _verifier(
    config: GatewayConfig, source: str, scheme: Scheme, secret: SecretStr
) -> SourceVerifier:
    return SourceVerifier(
        scheme=scheme, secret=secret, tolerance_seconds=config.sources[source].tolerance_seconds
    )
