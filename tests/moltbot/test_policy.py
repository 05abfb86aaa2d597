"""The policy document: its content, config overrides, the committed copy, the CLI, rule drift."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from moltbot.cli import app
from moltbot.config.project import ProjectConfig
from moltbot.effects.quiet import DIGEST_RULE
from moltbot.policy import REGENERATE, build_document, render_markdown, template_folder
from moltbot.registry import automations, get_automation
from moltbot.rules import RULE_ID_PATTERN
from moltbot.state.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

OVERRIDES = """
[owners]
default = "ops-team"
inventory-alert = "warehouse"

[routes.inventory-alert]
out = ["team-slack", "ops-email", "oncall-sms"]
low = { channels = ["team-slack"], policy = "at_most_once" }

[quiet_hours]
start = "22:00"
end = "08:00"

[escalation]
after_minutes = 10
"""


def repo_document():
    return build_document(ProjectConfig.load(ROOT / "moltbot.toml"))


def rule_of(document, rule_id):
    return next(r for a in document.automations for r in a.rules if r.id == rule_id)


def test_the_default_document_states_each_automation_its_schedule_chain_and_excerpts() -> None:
    document = repo_document()
    markdown = render_markdown(document, "en")

    assert [a.name for a in document.automations] == [a.name for a in automations()]
    for automation in automations():
        section = markdown.split(f"\n## {automation.name}\n", 1)[1].split("\n## ", 1)[0]
        if automation.default_schedule:
            assert f"(`{automation.default_schedule}`)" in section, automation.name
        for rule in automation.rules:
            assert f"### `{rule.id}`" in section
    report = rule_of(document, "daily-report.report")
    assert report.chain == ["outbox"] and report.chain_from == "default"
    assert report.excerpt["en"].startswith("Daily report {{ report_date")
    assert report.excerpt["ko"].startswith("일일 리포트 {{ report_date")
    assert "| schedule | at 09:00 (Asia/Seoul) (`0 9 * * *`) |" in markdown
    assert "- Channel chain: outbox (registry default)" in markdown
    # Every locale's excerpt is quoted whatever the document's language.
    assert "일일 리포트" in markdown and "Daily report" in render_markdown(document, "ko")
    assert [m.name for m in document.ticket_mappings] == [
        "support-form",
        "payment-failed",
        "payment-repeated",
        "error-spike",
    ]


def test_the_committed_policy_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "POLICY.md").read_text(encoding="utf-8")
    generated = render_markdown(repo_document(), "en")

    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "docs/POLICY.md",
            "generated",
            n=1,
        )
    )
    assert not diff, f"docs/POLICY.md is out of date: run `{REGENERATE}`\n{diff[:3000]}"


def test_config_overrides_show_in_the_document_and_change_its_version(tmp_path: Path) -> None:
    before = build_document()
    (tmp_path / "moltbot.toml").write_text(OVERRIDES, encoding="utf-8")
    after = build_document()

    out = rule_of(after, "inventory-alert.out-of-stock")
    low = rule_of(after, "inventory-alert.low-stock")
    recovered = rule_of(after, "inventory-alert.recovered")
    assert (out.chain, out.chain_from) == (["team-slack > ops-email > oncall-sms"], "[routes]")
    assert (low.chain, low.in_doubt) == (["team-slack"], "at_most_once")
    assert recovered.chain_from == "default"
    assert out.escalation is not None and out.escalation.after_minutes == 10
    assert recovered.escalation is None
    assert out.quiet_hours is not None and out.quiet_hours.held == []
    assert low.quiet_hours is not None and low.quiet_hours.held == ["warning"]
    owners = {a.name: a.owner for a in after.automations}
    assert owners["inventory-alert"] == "warehouse" and owners["daily-report"] == "ops-team"
    assert {a.owner for a in before.automations} == {None}
    assert after.version != before.version
    assert re.fullmatch(r"[0-9a-f]{12}", after.version)
    markdown = render_markdown(after, "en")
    chain = "- Channel chain: team-slack > ops-email > oncall-sms (moltbot.toml [routes])"
    assert chain in markdown
    assert "unacknowledged after 10 min, the next channel of the chain" in markdown


def test_cli_prints_markdown_json_and_korean_and_refuses_bad_input(tmp_path: Path) -> None:
    markdown = runner.invoke(app, ["policy"])
    as_json = runner.invoke(app, ["policy", "--format", "json"])
    korean = runner.invoke(app, ["--locale", "ko", "policy"])
    bad_format = runner.invoke(app, ["policy", "--format", "xml"])
    version = build_document().version
    (tmp_path / "moltbot.toml").write_text('[routes.no-such-bot]\ninfo = ["x"]\n', "utf-8")
    bad_config = runner.invoke(app, ["policy"])

    assert markdown.exit_code == 0 and markdown.stdout.startswith("# moltbot policy\n")
    document = json.loads(as_json.stdout)
    assert as_json.exit_code == 0 and f"`{document['version']}`" in markdown.stdout
    assert document["version"] == version
    assert korean.exit_code == 0 and korean.stdout.startswith("# moltbot 정책\n")
    assert "- 조건: 품목 재고가 품절(0)로 바뀜" in korean.stdout
    for result in (bad_format, bad_config):
        assert result.exit_code == 2 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "no-such-bot" in bad_config.stderr


def test_rules_and_templates_cannot_drift_apart() -> None:
    ids = [rule.id for automation in automations() for rule in automation.rules]
    assert len(ids) == len(set(ids))
    # The one rule the effects layer names itself (flows name theirs through `ENTRY.rule`).
    assert DIGEST_RULE in ids
    folders: dict[Path, set[str]] = {}
    for automation in automations():
        assert automation.rules, automation.name
        for rule in automation.rules:
            assert re.fullmatch(RULE_ID_PATTERN, rule.id) and rule.automation == automation.name
            if rule.route is not None and not rule.ops_fallback:
                assert rule.route in automation.default_routes, rule.id
            folder = template_folder(automation, rule)
            for name in rule.templates:
                for locale in ("en", "ko"):
                    assert (folder / locale / name).is_file(), f"{rule.id}: {locale}/{name}"
            folders.setdefault(folder, set()).update(rule.templates)
    for folder, referenced in folders.items():
        # Partials (`_macros.j2`) are imported by the templates that use them.
        shipped = {p.name for p in (folder / "en").glob("*.j2") if not p.name.startswith("_")}
        unreferenced = shipped - referenced
        if folder == ROOT / "moltbot" / "effects" / "templates":
            unreferenced -= {"ops.md.j2", "ops_title.txt.j2"}  # the layer's own ops notices
        assert not unreferenced, f"{folder}: no rule renders {sorted(unreferenced)}"
    with pytest.raises(KeyError, match="declares no rule"):
        get_automation("inventory-alert").rule("sold-out")


def test_an_older_ledger_gains_the_rule_and_version_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE effects (key VARCHAR(512) PRIMARY KEY, automation VARCHAR(200) "
                "NOT NULL, flow_run_id VARCHAR(64), kind VARCHAR(32) NOT NULL, target "
                "VARCHAR(255) NOT NULL, status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, "
                "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, remote_id "
                "VARCHAR(512), error TEXT)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO effects VALUES ('old:1', 'daily-report', NULL, 'message', "
                "'outbox', 'done', 1, '2026-11-01 00:00:00', '2026-11-01 00:00:00', NULL, NULL)"
            )
        )
    engine.dispose()

    with Ledger(url) as ledger:
        old = ledger.get("old:1")
        ledger.claim(
            "new:1",
            automation="daily-report",
            kind="message",
            target="outbox",
            details={"rule_id": "daily-report.report", "policy_version": "0123456789ab"},
        )
        new = ledger.get("new:1")

    assert old is not None and (old.rule_id, old.policy_version) == (None, None)
    assert new is not None and (new.rule_id, new.policy_version) == (
        "daily-report.report",
        "0123456789ab",
    )


def test_the_effects_layer_records_rule_and_version_with_every_key_it_claims(
    tmp_path: Path,
) -> None:
    from blocks import OutboxChannel
    from moltbot.effects import ChannelExecutor, EffectsRuntime, perform
    from moltbot.effects.executors import message_intent
    from moltbot.effects.model import Intent, Route
    from moltbot.messages import Message

    message = Message(
        key="daily-report:2026-12-03",
        automation="daily-report",
        title="Daily report",
        text="revenue 47,000",
        rule="daily-report.report",
    )
    found = Intent(
        key="ticket-creation:event:x:jira:OPS",
        automation="ticket-creation",
        kind="jira_issue",
        target="OPS",
        payload=None,
        route=Route(("outbox",)),
        companion_keys=("ticket-creation:occurrence:x",),
        known_remote_id="OPS-1",
        rule_id="ticket-creation.issue",
    )
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        runtime = EffectsRuntime(
            ledger=ledger,
            executors={"outbox": ChannelExecutor("outbox", OutboxChannel(folder=str(tmp_path)))},
            policy_version="0123456789ab",
        )
        outcomes = perform([message_intent(message, Route(("outbox",))), found], runtime)
        rows = {effect.key: (effect.rule_id, effect.policy_version) for effect in ledger.effects()}

    assert [outcome.status for outcome in outcomes] == ["done", "done"]
    assert rows == {
        "daily-report:2026-12-03:outbox": ("daily-report.report", "0123456789ab"),
        "ticket-creation:event:x:jira:OPS": ("ticket-creation.issue", "0123456789ab"),
        "ticket-creation:occurrence:x": ("ticket-creation.issue", "0123456789ab"),
    }
