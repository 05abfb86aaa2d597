"""What performs an effect: the executor protocol, and the executor of messages on a channel."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from moltbot.effects.model import Applied, Intent, Preview, Route
from moltbot.effects.preview import channel_preview
from moltbot.errors import ServiceError
from moltbot.messages import Message


class Executor(Protocol):
    """Performs intents on one destination (a channel, a Notion database, a Jira site).

    Attributes:
        name: the destination's name in routes (a channel block name, ``jira:<block>``).
        batch_size: intents per `apply` call (1: one at a time; Jira's bulk create: 50).
        can_look_up: `look_up` can tell whether an effect exists remotely (Jira by label,
            Notion by its key property, Sheets by re-reading); chat webhooks and SMTP cannot.
        retries_inside: the service's client adapter already retries (and checks before
            re-sending), so the layer calls `apply` once per attempt of a run.
        dead_letters: when the route's last destination fails, the effect is dead (announced,
            replayed by a person: messages); otherwise failed (the next run retries: writes
            to a service, which the automation re-plans with the same key).

    An executor may also have `preview(intent) -> Preview | None` (see `Previewing`): what
    the destination would receive, shown by a dry run instead of performing it.
    """

    name: str
    batch_size: int
    can_look_up: bool
    retries_inside: bool
    dead_letters: bool

    def apply(self, intents: Sequence[Intent]) -> dict[str, Applied | ServiceError]:
        """Perform `intents`; per key, the remote id or the service's refusal or failure.

        Raises:
            Exception: only for a bug (not a service's answer): the layer records it and
                re-raises.
        """
        ...

    def look_up(self, intents: Sequence[Intent]) -> dict[str, str]:
        """Which of `intents` exist remotely already: key -> remote id (empty if none can)."""
        ...


class Previewing(Protocol):
    """An executor that can show what it would do, from the rendering `apply` uses."""

    def preview(self, intent: Intent) -> Preview | None:
        """What this destination would receive for `intent` (None: nothing to show).

        Sends, writes and records nothing; masked (a dry run prints and logs it); may write
        a file under ``<MOLTBOT_HOME>/previews`` that the preview names.
        """
        ...


class Channel(Protocol):
    """Anything that can take a message: the channel blocks in `blocks.channels`."""

    def send(self, message: Message) -> str | None: ...


class ChannelExecutor:
    """Sends message intents on one channel block, one at a time; nothing to look up.

    Args:
        name: the channel's block name (the route link).
        channel: the loaded block.
    """

    batch_size = 1
    can_look_up = False
    retries_inside = False
    dead_letters = True

    def __init__(self, name: str, channel: Channel) -> None:
        self.name = name
        self.channel = channel

    def apply(self, intents: Sequence[Intent]) -> dict[str, Applied | ServiceError]:
        """Send each message; a `DeliveryError` is the channel's answer, anything else a bug."""
        return apply_each(intents, self._send)

    def _send(self, intent: Intent) -> str | None:
        # A follow-up whose original went out here: a channel with threads replies to it.
        send_follow_up = getattr(self.channel, "send_follow_up", None)
        if intent.original_remote_id is not None and send_follow_up is not None:
            return send_follow_up(intent.payload, intent.original_remote_id)  # type: ignore[no-any-return]
        return self.channel.send(intent.payload)

    def look_up(self, intents: Sequence[Intent]) -> dict[str, str]:
        """A chat post or an e-mail cannot be looked up."""
        return {}

    def preview(self, intent: Intent) -> Preview | None:
        """The message as this channel would render it (see `channel_preview`)."""
        return channel_preview(self.name, self.channel, intent)


def apply_each(
    intents: Sequence[Intent], perform_one: Callable[[Intent], str | None]
) -> dict[str, Applied | ServiceError]:
    """Perform intents one at a time: the remote id of each, or the `ServiceError` it raised
    (the service's answer; any other exception is a bug and propagates)."""
    answers: dict[str, Applied | ServiceError] = {}
    for intent in intents:
        try:
            answers[intent.key] = Applied(perform_one(intent))
        except ServiceError as failure:
            answers[intent.key] = failure
    return answers


def message_intent(message: Message, route: Route) -> Intent:
    """The intent of delivering `message` on `route`: keyed by the message's key and the
    route's first channel, so the route delivers it at most once whichever channel takes it."""
    return Intent(
        key=f"{message.key}:{route.name}",
        automation=message.automation,
        kind="message",
        target=route.describe(),
        payload=message,
        route=route,
        label=message.title,
        follow_up_of=message.follow_up_of,
        rule_id=message.rule,
    )


def dump_payload(kind: str, payload: Any) -> str:
    """The payload as JSON for the ledger (kept until done, for replay)."""
    if isinstance(payload, Message):
        return payload.model_dump_json()
    return json.dumps(payload, ensure_ascii=False, default=str)


def load_payload(kind: str, text: str) -> Any:
    """The payload stored by `dump_payload`."""
    if kind == "message":
        return Message.model_validate_json(text)
    return json.loads(text)
