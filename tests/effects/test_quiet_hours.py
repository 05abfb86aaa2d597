"""Quiet hours: the window arithmetic, the config's errors, and messages the layer holds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from moltbot.config.alerting import QuietHoursConfig, load_escalation, load_quiet_hours
from moltbot.config.project import ProjectConfig
from moltbot.config.settings import get_settings
from moltbot.effects import Route, perform
from moltbot.effects.executors import message_intent
from moltbot.effects.quiet import HeldMessage, held_until, plan_digests, quiet_until
from moltbot.effects.runtime import follow_rules
from moltbot.errors import InputError
from moltbot.messages import Message
from moltbot.state.ledger import EffectStatus

SEOUL_2300 = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)  # 23:00 in Seoul
SEOUL_0800_NEXT = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)  # 08:00 the next morning
NIGHT = QuietHoursConfig.model_validate(
    {"start": "22:00", "end": "08:00", "timezone": "Asia/Seoul", "hold_below": "critical"}
)
ROUTE = Route(("team-slack", "ops-email"))


def alert(item: str, severity: str = "warning") -> Message:
    return Message(
        key=f"inventory-alert:{item}",
        automation="inventory-alert",
        severity=severity,  # type: ignore[arg-type]
        title=f"재고 부족: {item}",
        text=f"{item} 재고가 기준 아래입니다.",
    )


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (SEOUL_2300, SEOUL_0800_NEXT),
        (datetime(2026, 12, 3, 13, 0, tzinfo=UTC), SEOUL_0800_NEXT),  # 22:00 sharp: quiet
        (datetime(2026, 12, 3, 21, 30, tzinfo=UTC), SEOUL_0800_NEXT),  # 06:30: same morning
        (SEOUL_0800_NEXT, None),  # 08:00 sharp: over
        (datetime(2026, 12, 3, 3, 0, tzinfo=UTC), None),  # noon
    ],
)
def test_a_window_across_midnight(now: datetime, until: datetime | None) -> None:
    window = NIGHT.window_for("team-slack", "UTC")
    assert window is not None
    assert quiet_until(now, window) == until


def test_a_window_inside_one_day_and_its_own_timezone() -> None:
    lunch = QuietHoursConfig.model_validate({"start": "12:00", "end": "13:00"})
    window = lunch.window_for("team-slack", "Asia/Seoul")
    assert window is not None and window.timezone == "Asia/Seoul"
    assert quiet_until(datetime(2026, 12, 3, 3, 30, tzinfo=UTC), window) == datetime(
        2026, 12, 3, 4, 0, tzinfo=UTC
    )
    assert quiet_until(datetime(2026, 12, 3, 4, 0, tzinfo=UTC), window) is None


def test_only_messages_below_the_routes_threshold_wait() -> None:
    config = QuietHoursConfig.model_validate(
        {
            "start": "22:00",
            "end": "08:00",
            "routes": {"oncall-sms": {"enabled": False}, "ops-email": {"hold_below": "warning"}},
        }
    )
    kw = {"now": SEOUL_2300, "config": config, "default_timezone": "Asia/Seoul"}
    assert held_until(alert("a", "info"), ROUTE, **kw) == SEOUL_0800_NEXT
    assert held_until(alert("a", "warning"), ROUTE, **kw) == SEOUL_0800_NEXT
    assert held_until(alert("a", "critical"), ROUTE, **kw) is None
    assert held_until(alert("a", "warning"), Route(("ops-email",)), **kw) is None
    assert held_until(alert("a", "info"), Route(("ops-email",)), **kw) == SEOUL_0800_NEXT
    assert held_until(alert("a", "info"), Route(("oncall-sms",)), **kw) is None
    assert held_until(alert("a", "info"), ROUTE, now=SEOUL_2300, config=None,
                      default_timezone="UTC") is None  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[quiet_hours]\nstart = "25:00"\nend = "08:00"\n', "[quiet_hours] start: must be a time"),
        ('[quiet_hours]\nstart = "22:00"\nuntil = "08:00"\n', "[quiet_hours] until: unknown key"),
        (
            '[quiet_hours]\nstart = "22:00"\nend = "08:00"\ntimezone = "Mars/Olympus"\n',
            "[quiet_hours] timezone: is not an IANA timezone",
        ),
        (
            '[quiet_hours.routes.team-slack]\nhold_below = "urgent"\n',
            "[quiet_hours.routes.team-slack] hold_below:",
        ),
        ("[escalation]\nafter_minutes = 0\n", "[escalation] after_minutes:"),
        (
            '[escalation]\npublic_url = "ftp://hooks.example.com/?token=s3cr3t"\n',
            "[escalation] public_url: must be an http",
        ),
    ],
)
def test_a_bad_table_is_one_line_naming_its_place(tmp_path: Path, toml: str, expected: str):
    path = tmp_path / "moltbot.toml"
    path.write_text(toml, encoding="utf-8")
    config = ProjectConfig.load(path)
    with pytest.raises(InputError) as caught:
        load_quiet_hours(config)
        load_escalation(config)
    message = str(caught.value)
    assert message.startswith("moltbot.toml line ")
    assert expected in message
    assert "\n" not in message and "s3cr3t" not in message and "Olympus" not in message


def test_low_alerts_at_23_are_held_in_the_ledger_and_an_urgent_one_goes(
    sandbox, make_runtime, ledger, clock, tmp_path: Path
):
    (tmp_path / "moltbot.toml").write_text(
        '[quiet_hours]\nstart = "22:00"\nend = "08:00"\n', encoding="utf-8"
    )
    clock.now = SEOUL_2300
    runtime = make_runtime()
    follow_rules(runtime, ProjectConfig.load(tmp_path / "moltbot.toml"), get_settings())
    low = [message_intent(alert(f"SKU-{n}", "warning"), ROUTE) for n in range(5)]
    urgent = message_intent(alert("SKU-9", "critical"), ROUTE)

    outcomes = perform([*low, urgent], runtime)
    again = perform(low, runtime)

    assert [o.status for o in outcomes] == ["queued"] * 5 + ["done"]
    assert [o.status for o in again] == ["queued"] * 5  # a re-run holds nothing twice
    [post] = sandbox.state.slack.messages_for(sandbox.slack_webhook_url("effects"))
    assert "SKU-9" in post.payload["text"]
    held = ledger.effects(status=EffectStatus.QUEUED)
    assert [effect.key for effect in held] == [intent.key for intent in low]
    assert {effect.due_at for effect in held} == {SEOUL_0800_NEXT}
    assert all(effect.payload and "SKU" in effect.payload for effect in held)
    assert ledger.queued_due(SEOUL_2300) == []
    assert len(ledger.queued_due(SEOUL_0800_NEXT)) == 5


def test_held_messages_become_one_digest_per_route_and_end(tmp_path: Path) -> None:
    held = [
        HeldMessage(f"k{n}:team-slack", alert(f"SKU-{n}"), ROUTE, SEOUL_0800_NEXT, SEOUL_2300)
        for n in range(5)
    ] + [HeldMessage("k9:ops-email", alert("SKU-9", "info"), Route(("ops-email",)),
                     SEOUL_0800_NEXT, SEOUL_2300)]  # fmt: skip

    digests = plan_digests(held, locale="ko", timezone="Asia/Seoul")
    replanned = plan_digests(list(reversed(held)), locale="ko", timezone="Asia/Seoul")

    assert [(d.route.links, len(d.members)) for d in digests] == [
        (ROUTE.links, 5),
        (("ops-email",), 1),
    ]
    slack = digests[0].message
    assert slack.title == "방해 금지 시간에 보류된 메시지 5건 (2026-12-04 08:00까지)"
    assert all(f"재고 부족: SKU-{n}" in slack.text for n in range(5))
    assert slack.severity == "warning"
    # The same members make the same key, whatever order the ledger gave them in.
    assert {d.message.key for d in replanned} == {d.message.key for d in digests}
