"""The form-digest automation: new Google Forms answers -> a digest in Notion, chat and outbox."""

from moltbot.registry import Automation
from moltbot.rules import Rule, Words, run_summary_rule

RULES: tuple[Rule, ...] = (
    Rule(
        "form-digest.digest",
        condition=Words(
            "new answers in the response sheet since the watermark (warning when some need "
            "attention)",
            "워터마크 이후 응답 시트의 새 응답 (확인이 필요한 응답이 있으면 경고)",
        ),
        dedup=Words(
            "form-digest:<sheet>/<worksheet>:<first>-<last row>:<fingerprint>, per route",
            "form-digest:<시트>/<워크시트>:<첫 행>-<끝 행>:<지문>, 경로마다",
        ),
        route="info",
        severities=("info", "warning"),
        templates=(
            "title.txt.j2",
            "slack_summary.mrkdwn.j2",
            "slack_questions.mrkdwn.j2",
            "slack_footer.mrkdwn.j2",
            "digest.md.j2",
            "email.html.j2",
        ),
    ),
    Rule(
        "form-digest.notion-page",
        condition=Words(
            "the same new answers, with notion_block and notion_database_id set",
            "같은 새 응답, notion_block과 notion_database_id가 있을 때",
        ),
        dedup=Words(
            "the digest's key + :notion (also the page's key property)",
            "다이제스트 키 + :notion (페이지의 key 속성에도 저장)",
        ),
        kind="page",
        templates=("digest.md.j2",),
    ),
    Rule(
        "form-digest.nothing-new",
        condition=Words(
            'no new answers and empty="note"',
            '새 응답이 없고 empty="note"',
        ),
        dedup=Words(
            "form-digest:<sheet>/<worksheet>:empty:<flow run id>, per route",
            "form-digest:<시트>/<워크시트>:empty:<플로 실행 id>, 경로마다",
        ),
        route="info",
        severities=("info",),
        templates=("empty_title.txt.j2", "empty_note.md.j2"),
    ),
    run_summary_rule("form-digest"),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

ENTRY = Automation(
    name="form-digest",
    flow_ref="flows.form_digest.flow:form_digest",
    description="New Google Form answers in a sheet -> a digest in Notion, chat and outbox.",
    default_schedule="0 * * * *",
    # Every digest must run, one after the other, so a run beyond the limit queues: the
    # watermark makes a queued run find the answers already digested instead of redoing them.
    collision_strategy="ENQUEUE",
    default_routes={"info": ("outbox",)},
    rules=RULES,
    shadow_ref="flows.form_digest.shadow:replay",
)
