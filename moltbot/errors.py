"""Error types shared by flows, tasks and the CLI: bad input (exit 2) versus service failures."""

from __future__ import annotations

from typing import Self


class MoltbotError(Exception):
    """Base class of moltbot's own errors; messages never contain secrets or personal data.

    Text arguments are masked when the error is made: the message becomes the run's state
    message and event in the Prefect API, the audit row and the CLI's line, none of which pass
    through log masking.
    """

    def __init__(self, *args: object) -> None:
        from moltbot.masking import mask_text

        super().__init__(*(mask_text(arg) if isinstance(arg, str) else arg for arg in args))


class InputError(MoltbotError):
    """The user's input is unusable (missing column, wrong type, unknown name): exit code 2."""


class ServiceError(MoltbotError):
    """An external service (Sheets, Notion, Jira, a chat or mail server) refused or failed a call.

    The message names the block and quotes the service's own error text, never a secret.

    Attributes:
        transient: True when retrying may succeed (408, 429, 5xx, connection errors).
        status: the HTTP or SMTP status code, when there was one.
        retry_after: seconds the service asked us to wait, when it said.
        maybe_applied: True when the request may have taken effect all the same (a 5xx, a
            timeout, an answer lost on the way), so a create must be checked, not re-sent.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
        maybe_applied: bool = False,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied

    @classmethod
    def for_status(cls, message: str, status: int, *, retry_after: float | None = None) -> Self:
        """The error for an HTTP answer with `status`: transient for 408, 429 and 5xx, and
        possibly applied for a 5xx (the service may have failed after doing the work)."""
        return cls(
            message,
            transient=status in (408, 429) or status >= 500,
            status=status,
            retry_after=retry_after,
            maybe_applied=status >= 500,
        )


class InputRefused(ServiceError):
    """A service refused the effect itself (bad fields): the service works, the input must be
    fixed. The effects layer records it `failed` and tries no other destination."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class DeliveryError(ServiceError):
    """A channel refused or failed to take a message (same attributes as `ServiceError`)."""


class DeliveryFailed(MoltbotError):
    """A run finished its work but some deliveries failed: exit code 1, result still reported.

    Attributes:
        result: the run's result document, with the failed deliveries in it.
    """

    def __init__(self, message: str, result: dict[str, object]) -> None:
        super().__init__(message)
        self.result = result
