"""Words of the CLI's tables in the configured locale (English and Korean)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from moltbot.config.settings import get_settings

T = TypeVar("T")

_TEXTS: dict[str, dict[str, tuple[str, ...]]] = {
    "outbox_columns": {
        "en": ("key", "automation", "kind", "status", "via / route", "updated (UTC)", "error"),
        "ko": ("키", "자동화", "종류", "상태", "전달 채널 / 경로", "갱신 (UTC)", "오류"),
    },
    "list_columns": {
        "en": ("automation", "description", "default schedule"),
        "ko": ("자동화", "설명", "기본 일정"),
    },
    "list_hint": {
        "en": ("Parameters and an example: uv run moltbot show NAME",),
        "ko": ("파라미터와 예제: uv run moltbot show 이름",),
    },
    "show_columns": {
        "en": ("parameter", "expected", "default", "meaning", "parameters", "required"),
        "ko": ("파라미터", "형식", "기본값", "의미", "파라미터", "필수"),
    },
    # `moltbot show`: the lines around the parameter table.
    "show_lines": {
        "en": (
            "schedule: {schedule}",
            "needs {choice}",
            "default routes: {routes} (override in [routes] of moltbot.toml)",
            "example: {example}",
        ),
        "ko": (
            "일정: {schedule}",
            "필요: {choice}",
            "기본 경로: {routes} (moltbot.toml의 [routes]에서 바꿀 수 있음)",
            "예: {example}",
        ),
    },
    "run_footer": {
        "en": ("Prefect UI: {url}   log: {log}", "Prefect's logs of these runs: {log}"),
        "ko": ("Prefect UI: {url}   로그: {log}", "이 실행들의 Prefect 로그: {log}"),
    },
    "audit_columns": {
        "en": ("#", "time", "actor", "action", "target", "outcome", "detail"),
        "ko": ("#", "시각", "행위자", "동작", "대상", "결과", "비고"),
    },
    # The actions of `moltbot.state.audit.AuditAction`, in that order (the table shows them in
    # the locale; the trail and --json keep the English words).
    "audit_actions": {
        "en": (
            "run",
            "approve",
            "reject",
            "edit",
            "review timed out",
            "approval refused",
            "replay",
            "resolve",
            "deploy",
            "config changed",
            "block saved",
            "webhook",
            "prune",
            "escalate",
            "acknowledge",
        ),
        "ko": (
            "실행",
            "승인",
            "반려",
            "수정",
            "검토 시간 초과",
            "승인 거부",
            "재전송",
            "판정",
            "배포",
            "설정 변경",
            "블록 저장",
            "웹훅",
            "정리",
            "에스컬레이션",
            "확인",
        ),
    },
    "audit_empty": {
        "en": ("The audit trail holds no entries yet.",),
        "ko": ("감사 기록이 아직 없습니다.",),
    },
    "audit_verified": {
        "en": ("Audit chain intact: {count} row(s) verified, head {head}.",),
        "ko": ("감사 기록 체인 정상: {count}개 행 검증, 최신 해시 {head}.",),
    },
    "audit_broken": {
        "en": ("audit chain broken: {problem}",),
        "ko": ("감사 기록 체인 손상: {problem}",),
    },
    # What `AuditTrail.verify` found, by its kind: {seq} the first bad row, {anchor} where the
    # anchor says the chain ends.
    "audit_problem_altered": {
        "en": ("row {seq} was altered: its hash does not match",),
        "ko": ("{seq}번 행이 변경되었습니다: 해시가 맞지 않습니다",),
    },
    "audit_problem_missing": {
        "en": ("row {seq} is missing: it was removed",),
        "ko": ("{seq}번 행이 없습니다: 삭제되었습니다",),
    },
    "audit_problem_unlinked": {
        "en": (
            "row {seq} does not link to the row before it: a row was removed, inserted or "
            "rewritten there",
        ),
        "ko": (
            "{seq}번 행이 앞 행과 이어지지 않습니다: 그 자리에서 행이 삭제·삽입·재작성되었습니다",
        ),
    },
    "audit_problem_inserted": {
        "en": ("row {seq} lies in the pruned part of the chain: it was inserted",),
        "ko": ("{seq}번 행이 정리(prune)된 구간에 있습니다: 삽입되었습니다",),
    },
    "audit_problem_tail_missing": {
        "en": ("rows {seq}-{anchor} are missing: the chain's anchor ends at row {anchor}",),
        "ko": ("{seq}~{anchor}번 행이 없습니다: 체인의 앵커는 {anchor}번 행에서 끝납니다",),
    },
    "audit_problem_beyond_anchor": {
        "en": (
            "row {seq} is not where the chain's anchor ends (row {anchor}): rows were "
            "appended or rewritten behind its back",
        ),
        "ko": (
            "{seq}번 행은 체인 앵커의 끝({anchor}번 행)과 맞지 않습니다: 앵커 몰래 행이 "
            "추가되거나 재작성되었습니다",
        ),
    },
    "outbox_empty": {
        "en": ("The ledger holds no effects yet.",),
        "ko": ("원장에 기록된 작업이 아직 없습니다.",),
    },
    # `moltbot prune`: the table's columns in a dry run and for real, then the line under it.
    "prune_columns": {
        "en": ("store", "would remove", "removed", "kept (still needed)"),
        "ko": ("저장소", "삭제 예정", "삭제함", "보존 (아직 필요)"),
    },
    "prune_summary": {
        "en": (
            "Finished before {cutoff} (older than {age}). Dry run: nothing was removed.",
            "Finished before {cutoff} (older than {age}).",
        ),
        "ko": (
            "{cutoff} 이전에 끝난 항목 ({age} 초과). 미리 보기: 아무것도 삭제하지 않았습니다.",
            "{cutoff} 이전에 끝난 항목 ({age} 초과).",
        ),
    },
    # `moltbot serve` / `deploy`: the missed-run alerts (deployments/alerts.py), in the order off,
    # nothing to watch, set up, one watched deployment, paused when serving stops.
    "missed_run_report": {
        "en": (
            "missed-run alerts: off (no ops block)",
            "missed-run alerts: no deployment runs on a schedule",
            "missed-run alerts: {created} created, {updated} updated, {deleted} stale removed"
            " -> block {block}",
            "  {deployment}: ops are told once when no run completes within {window}"
            " ({gap} + {grace} grace)",
            "missed-run alerts: paused with the schedules ({count})",
        ),
        "ko": (
            "누락 실행 알림: 꺼짐 (ops 블록 없음)",
            "누락 실행 알림: 일정으로 실행되는 배포가 없습니다",
            "누락 실행 알림: {created}개 생성, {updated}개 갱신, {deleted}개 정리 -> 블록 {block}",
            "  {deployment}: {window} 안에 완료된 실행이 없으면 ops에 한 번 알립니다"
            " ({gap} + 유예 {grace})",
            "누락 실행 알림: 일정과 함께 일시 중지 ({count}개)",
        ),
    },
    # `moltbot doctor`: the table's columns, the statuses in the order ok, warn, fail, and the
    # summary line.
    "doctor_columns": {
        "en": ("check", "status", "finding", "what to do"),
        "ko": ("점검", "상태", "결과", "조치"),
    },
    "doctor_statuses": {
        "en": ("ok", "warning", "FAILED"),
        "ko": ("정상", "경고", "실패"),
    },
    "doctor_summary": {
        "en": ("{failed} failed, {warned} warning(s), {ok} ok",),
        "ko": ("실패 {failed}개, 경고 {warned}개, 정상 {ok}개",),
    },
    # `moltbot metrics`: the table's columns (`moltbot.metrics.display_cells` order), then the
    # lines around it: the period, nothing recorded, Prefect unreachable, the page written.
    "metrics_columns": {
        "en": (
            "automation",
            "runs",
            "success",
            "p50",
            "p95",
            "retries",
            "done",
            "already done",
            "dead",
            "in doubt",
            "omissions",
            "trigger → delivery",
            "fallbacks",
            "acks",
            "escalations",
            "hours saved",
        ),
        "ko": (
            "자동화",
            "실행",
            "성공률",
            "p50",
            "p95",
            "재시도",
            "완료",
            "이미 완료",
            "실패(dead)",
            "불확실",
            "누락",
            "트리거 → 전달",
            "대체 채널",
            "확인",
            "에스컬레이션",
            "절약 시간",
        ),
    },
    "metrics_lines": {
        "en": (
            "Metrics from {since} to {until} ({timezone})",
            "Nothing was recorded in this period: no runs, effects or audit entries.",
            "The Prefect API could not be reached: runs, durations, already-done counts and "
            "omission rates are missing; the rest comes from the ledger.",
            "Page written: {path}",
        ),
        "ko": (
            "{since}부터 {until}까지의 지표 ({timezone})",
            "이 기간에 기록된 것이 없습니다: 실행, 작업, 감사 기록 모두 없음.",
            "Prefect API에 연결할 수 없습니다: 실행 수, 소요 시간, 이미 완료 수, 누락률이 "
            "빠졌고 나머지는 원장에서 읽었습니다.",
            "페이지 저장: {path}",
        ),
    },
    # `moltbot run metrics-weekly`: what the run published.
    "metrics_published": {
        "en": (
            "{count} automation(s) active, {runs:,} run(s), {success} succeeded; the page is the "
            "artifact {key}",
        ),
        "ko": (
            "활동한 자동화 {count}개, 실행 {runs:,}회, 성공률 {success}; 페이지는 아티팩트 {key}",
        ),
    },
    # `moltbot shadow`: the table of replayed runs, the words of a change, and its lines.
    "shadow_columns": {
        "en": ("run", "recorded (UTC)", "added", "removed", "changed", "same"),
        "ko": ("실행", "기록 시각 (UTC)", "추가", "삭제", "변경", "동일"),
    },
    "shadow_kinds": {
        "en": ("message", "ticket", "comment"),
        "ko": ("메시지", "티켓", "댓글"),
    },
    "shadow_changes": {
        "en": ("added", "removed", "changed", "same"),
        "ko": ("추가", "삭제", "변경", "동일"),
    },
    "shadow_lines": {
        "en": (
            "no recorded runs of {automation} since {since}: nothing to compare "
            "(real runs record their inputs; dry runs do not)",
            "{runs} run(s) of {automation} since {since} replayed as dry runs: {added} added, "
            "{removed} removed, {changed} changed, {same} the same; nothing was sent or recorded",
            "nothing would change",
            "something would change or could not be replayed (exit 1)",
            "run {run}: not replayed: {problem}",
            "run {run}: {change} {kind} -> {target}: {key}",
            "the report with every diff: {path}",
            "run {run}: not replayed: its input is gone (pruned)",
        ),
        "ko": (
            "{since} 이후 기록된 {automation} 실행이 없습니다: 비교할 것이 없습니다 "
            "(실제 실행만 입력을 기록하고 드라이 런은 기록하지 않습니다)",
            "{since} 이후 {automation} 실행 {runs}건을 드라이 런으로 재생: 추가 {added}건, "
            "삭제 {removed}건, 변경 {changed}건, 동일 {same}건; "
            "아무것도 보내거나 기록하지 않았습니다",
            "바뀌는 것이 없습니다",
            "바뀌는 것이 있거나 재생하지 못한 실행이 있습니다 (종료 코드 1)",
            "실행 {run}: 재생하지 못함: {problem}",
            "실행 {run}: {change} {kind} -> {target}: {key}",
            "모든 차이가 담긴 보고서: {path}",
            "실행 {run}: 재생하지 못함: 입력이 정리되어 남아 있지 않습니다",
        ),
    },
}


def in_locale(by_locale: Mapping[str, T]) -> T:
    """The entry of `by_locale` for `MOLTBOT_LOCALE` (the English one when it has none)."""
    return by_locale.get(get_settings().locale, by_locale["en"])


def cli_text(name: str) -> tuple[str, ...]:
    """The texts called `name` in `MOLTBOT_LOCALE` (English when the locale has none)."""
    return in_locale(_TEXTS[name])


def audit_actions(locale: str) -> tuple[str, ...]:
    """The audit trail's action words in `locale` (see `audit_actions` in the texts)."""
    return _TEXTS["audit_actions"][locale]


def text_in(name: str, locale: str) -> tuple[str, ...]:
    """The texts called `name` in `locale` (English when the locale has none)."""
    return _TEXTS[name].get(locale, _TEXTS[name]["en"])
