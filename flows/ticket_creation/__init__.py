"""The ticket-creation automation: form answers and events -> Jira issues, never twice."""

from moltbot.registry import Automation
from moltbot.rules import Rule, Words, run_summary_rule

RULES: tuple[Rule, ...] = (
    Rule(
        "ticket-creation.issue",
        condition=Words(
            "a form answer or event whose mapping's dedup key has no issue yet",
            "매핑의 중복 키에 해당하는 이슈가 아직 없는 설문 응답 또는 이벤트",
        ),
        dedup=Words(
            "ticket-creation:<dedup key>:jira:<project> (a label search finds it after a crash)",
            "ticket-creation:<중복 키>:jira:<프로젝트> (중단 뒤에는 레이블 검색으로 찾음)",
        ),
        kind="ticket",
        templates=("footer.txt.j2",),
    ),
    Rule(
        "ticket-creation.recurrence",
        condition=Words(
            "a later item with the same dedup key: a comment on the first one's issue",
            "같은 중복 키의 이후 항목: 첫 이슈에 댓글",
        ),
        dedup=Words(
            "the occurrence's key (item id), one comment each",
            "발생 키(항목 id)마다 댓글 하나",
        ),
        kind="comment",
        templates=("comment.txt.j2",),
    ),
    Rule(
        "ticket-creation.handoff",
        condition=Words(
            "issues were created or commented on, or some failed (warning when some failed)",
            "이슈가 생성·댓글 처리되었거나 일부 실패함 (실패가 있으면 경고)",
        ),
        dedup=Words(
            "ticket-creation:handoff:<digest of the issues and comments>, per route",
            "ticket-creation:handoff:<이슈와 댓글의 다이제스트>, 경로마다",
        ),
        route="info",
        severities=("info", "warning"),
        templates=("title.txt.j2", "handoff.mrkdwn.j2", "handoff.md.j2", "handoff.html.j2"),
    ),
    Rule(
        "ticket-creation.review-request",
        condition=Words(
            "review=true: the run pauses with the drafts until a reviewer decides",
            "review=true: 검토자가 결정할 때까지 초안을 보여 주며 실행이 멈춤",
        ),
        dedup=Words(
            "one request per plan (the ledger keeps the decision)",
            "계획마다 요청 하나 (결정은 원장에 보관)",
        ),
        kind="review",
        templates=("review_request.md.j2",),
    ),
    run_summary_rule("ticket-creation"),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

ENTRY = Automation(
    name="ticket-creation",
    flow_ref="flows.ticket_creation.flow:ticket_creation",
    description="Form answers and events -> Jira issues, never duplicated, optional review.",
    default_schedule=None,
    # Every batch of tickets must be created, one after the other, so a run beyond the limit
    # queues: the ledger keys make a queued run find the issues already created.
    collision_strategy="ENQUEUE",
    default_routes={"info": ("outbox",)},
    shadow_ref="flows.ticket_creation.shadow:replay",
    # No webhook route of its own: `payment.failed` goes to payment-failures, which opens a
    # ticket through this flow once a customer fails repeatedly (not one per failure). A
    # `[webhooks.routes]` entry can still send any event type here (with `inbox_ids`).
    rules=RULES,
    review_parameter="review",
)
