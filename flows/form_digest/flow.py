"""The form-digest flow: new Google Forms answers -> a Notion page, chat, outbox, artifact, once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from blocks.notion import NotionCredentials
from blocks.sheets import GoogleSheetsCredentials
from flows.form_digest import ENTRY, shadow
from flows.form_digest.digest import Digest, FormLayout, build_digest, plan_layout
from flows.form_digest.render import (
    AUTOMATION,
    build_digest_message,
    build_empty_note,
    check_digest_schema,
    digest_context,
    digest_markdown,
    empty_note_key,
    notion_key,
    notion_page_content,
    run_summary,
    stream_of,
    window_key,
)
from flows.shared.forms import ResponseWindow, parse_form_timestamps, select_window
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.blockdocs import load_block
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects import Intent, Route
from moltbot.effects.report import RunReport, finish_run
from moltbot.effects.services import NotionPageExecutor
from moltbot.errors import DeliveryFailed, InputError
from moltbot.masking import mask_text
from moltbot.runlabels import (
    artifact_description,
    flow_run_namer,
    label_current_run,
    local_minute,
)
from tasks.artifacts import publish_markdown
from tasks.effects import (
    channel_destinations,
    deliver,
    perform_effects,
    routes_for,
    unsettled,
)
from tasks.notion import page_link, read_database_schema
from tasks.shadow import record_run_input
from tasks.sheets import load_worksheet
from tasks.watermarks import advance_watermark, hold_watermark, read_watermark

ARTIFACT_KEY = "form-digest"


class FormDigestResult(RunReport):
    """A form-digest run: the window of sheet rows, the digest's figures, the Notion page,
    the messages and the watermark."""

    form: str
    spreadsheet_id: str
    worksheet: str
    window: dict[str, Any]
    rows: int
    responses: int
    questions: dict[str, Any]
    needs_attention: list[dict[str, Any]]
    needs_attention_total: int
    notion_page_id: str | None
    notion_url: str | None
    notion: dict[str, Any] | None
    watermark: dict[str, Any]


EMPTY_CHOICES = ("skip", "note")
# The run result stays readable when a first run over a big sheet finds thousands of rows to
# look at: it lists the first ones and says how many there are; messages name every row.
RESULT_MAX_ATTENTION = 100


# --------------------------------------------------------------------------- parameters


def check_parameters(
    *, empty: str, max_text_answers: int, notion_block: str | None, notion_database_id: str | None
) -> None:
    """Refuse parameter values the flow cannot work with, before anything is read.

    Raises:
        InputError: `empty` not skip/note, a negative `max_text_answers`, or only one of
            `notion_block` and `notion_database_id`.
    """
    if empty not in EMPTY_CHOICES:
        raise InputError(f"empty must be one of {', '.join(EMPTY_CHOICES)}, got {empty!r}")
    if max_text_answers < 0:
        raise InputError(f"max_text_answers must be 0 or more, got {max_text_answers}")
    if bool(notion_block) != bool(notion_database_id):
        raise InputError("give both notion_block and notion_database_id, or neither")


# --------------------------------------------------------------------------- tasks


@task(name="plan-form", cache_policy=NO_CACHE)
def plan_form(
    frame: pd.DataFrame,
    *,
    timestamp_column: str | None,
    required_columns: list[str] | None,
    nps_column: str | None,
    skip_columns: list[str] | None,
    question_kinds: dict[str, str] | None,
    timezone: str,
) -> tuple[FormLayout, pd.Series]:
    """Check the sheet against the parameters, type its questions, parse every timestamp.

    Raises:
        InputError: see `plan_layout`.
    """
    layout = plan_layout(
        frame,
        timestamp_column=timestamp_column,
        required_columns=required_columns,
        nps_column=nps_column,
        skip_columns=skip_columns,
        question_kinds=question_kinds,
    )
    return layout, parse_form_timestamps(frame[layout.timestamp_column], timezone)


@task(name="compute-digest", cache_policy=NO_CACHE)
def compute_digest(window: ResponseWindow, layout: FormLayout, *, max_text_answers: int) -> Digest:
    """The window's figures per question and the rows that need attention."""
    return build_digest(window.rows, window.times, layout, max_text_answers=max_text_answers)


# --------------------------------------------------------------------------- the flow


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def form_digest(
    sheets_block: str,
    spreadsheet_id: str,
    worksheet: str,
    form_name: str | None = None,
    channels: list[str | list[str]] | None = None,
    notion_block: str | None = None,
    notion_database_id: str | None = None,
    timestamp_column: str | None = None,
    required_columns: list[str] | None = None,
    nps_column: str | None = None,
    empty: str = "skip",
    max_text_answers: int = 20,
    skip_columns: list[str] | None = None,
    question_kinds: dict[str, str] | None = None,
    timezone: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Digest the responses a Google Form added to its sheet since the last digest, once.

    Order of effects, and why a crash neither loses nor repeats a response:

    1. Check everything that can be bad input: parameters, channel and credentials blocks, the
       sheet (read whole, one values request), its columns, the NPS column's values and the
       Notion database's properties. Bad input stops here: no ledger row, no watermark, no page,
       no message.
    2. Read the watermark of ``<spreadsheet id>/<worksheet>`` and choose the window: the rows
       after it (`flows.shared.forms.select_window`: rows edited after they were digested never
       count again). Nothing new: `empty="skip"` stops; `empty="note"` sends a short note keyed by
       the flow run (a retry of the run does not repeat it). Nothing is held or advanced.
    3. Hold the window in the watermark. A run that fails after this re-plans exactly this
       window next time, even if more rows arrived meanwhile, so its idempotency key
       ``form-digest:<stream>:<first>-<last row>:<fingerprint>`` is rebuilt unchanged.
    4. The Notion page (ledger key ``<window key>:notion``, stored in the page's key property as
       well), through the effects layer. Created once; after a lost answer or a crash between
       Notion and the ledger the page is looked up by its key and adopted (its blocks
       completed) instead of making a second one. If Notion fails the run fails here, before
       any message: a message without the link would be skipped by the retry, which will
       have one.
    5. The digest message on every route (ledger key ``<window key>:<first channel>``),
       linking the page: each route delivers it at most once; a retry skips the ones that
       have it, and a route whose channels all failed is dead until replayed.
    6. The markdown artifact (answers masked: no e-mail or phone number in the UI).
    7. Only when the page and every channel are done is the watermark advanced (a
       compare-and-set on the position read in 2). A crash before that leaves the window held;
       the next run finds the page and the messages done (already_done, none repeated) and then
       advances. Advancing first would instead lose the window on a crash.

    Free-text answers go to Notion, e-mail and the outbox (the business's own places); logs
    carry only counts, and the artifact masks e-mail addresses and phone numbers.

    Args:
        sheets_block: a `GoogleSheetsCredentials` block name.
        spreadsheet_id: the response spreadsheet (from its URL).
        worksheet: the responses tab's title (e.g. ``설문지 응답 시트1``, ``Form Responses 1``).
        form_name: how titles name the form; default the worksheet title.
        channels: routes: each a channel block name (or `outbox`), or a list of them tried in
            order; default `[routes.form-digest]` in moltbot.toml, else the outbox.
        notion_block: a `NotionCredentials` block name (with `notion_database_id`).
        notion_database_id: the digest database: a title property and ``Date`` (date),
            ``Responses`` (number), ``moltbot key`` (text); ``Form`` (select) if present.
        timestamp_column: the Forms timestamp column; default the first column.
        required_columns: columns every response must answer; rows without an answer are
            listed under needs attention, not counted.
        nps_column: a 0-10 question to score as NPS (promoters 9-10, detractors 0-6).
        empty: nothing new: `skip` (send nothing) or `note` (a short note each run).
        max_text_answers: free-text answers listed per question, then "and K more".
        skip_columns: columns left out of the digest (names, e-mail addresses…).
        question_kinds: column -> `choice`, `checkbox`, `numeric` or `text` where the
            automatic typing guesses wrong.
        timezone: IANA timezone of the sheet's timestamps; default `MOLTBOT_TIMEZONE`.
        dry_run: read and digest, but create, send, hold and advance nothing.

    Returns:
        The `FormDigestResult` as JSON (times in the timezone, ISO 8601).
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    timezone = checked_timezone(timezone or settings.timezone)
    locale = settings.locale
    check_parameters(
        empty=empty,
        max_text_answers=max_text_answers,
        notion_block=notion_block,
        notion_database_id=notion_database_id,
    )
    form = form_name or worksheet
    stream = stream_of(spreadsheet_id, worksheet)
    now = datetime.now(UTC)
    checked = local_minute(now, timezone)

    routes = routes_for(ENTRY, "info", channels)
    destinations = channel_destinations(link for route in routes for link in route.links)
    sheets = load_block(GoogleSheetsCredentials, sheets_block)
    notion = load_block(NotionCredentials, notion_block) if notion_block else None
    frame = load_worksheet(sheets, spreadsheet_id, worksheet, block_name=sheets_block)
    layout, times = plan_form(
        frame,
        timestamp_column=timestamp_column,
        required_columns=required_columns,
        nps_column=nps_column,
        skip_columns=skip_columns,
        question_kinds=question_kinds,
        timezone=timezone,
    )
    database = None
    if notion is not None and notion_database_id and notion_block:
        data_source_id, properties = read_database_schema(notion, notion_database_id, notion_block)
        database = check_digest_schema(notion_database_id, data_source_id, properties)

    mark = read_watermark(AUTOMATION, stream)
    window = select_window(
        frame,
        times,
        timestamp_column=layout.timestamp_column,
        position=mark.position,
        pending=mark.pending,
    )
    result: dict[str, Any] = {
        "form": form,
        "spreadsheet_id": spreadsheet_id,
        "worksheet": worksheet,
        "window": _window_json(window, timezone),
        "dry_run": dry_run,
    }

    if not len(window.rows):
        logger.info("No new responses after sheet row %s", (mark.position or {}).get("row"))
        deliveries: list[dict[str, Any]] = []
        if empty == "note":
            since = pd.Timestamp(mark.position["time"]) if mark.position else None
            note = build_empty_note(
                form=form,
                key=empty_note_key(stream, str(flow_run.get_id())),
                since=since.to_pydatetime() if since is not None and not pd.isna(since) else None,
                now=now,
                timezone=timezone,
                locale=locale,
            )
            deliveries = deliver(note, routes, destinations, dry_run=dry_run)
        result.update(
            rows=0,
            responses=0,
            questions={},
            needs_attention=[],
            needs_attention_total=0,
            deliveries=deliveries,
            notion_page_id=None,
            notion_url=None,
            notion=None,
            watermark={"status": "unchanged", "row": (mark.position or {}).get("row")},
        )
        result["artifacts"] = _publish(
            result, locale, digest_text=None, empty=True, checked=checked
        )
        return _finish(result)

    digest = compute_digest(window, layout, max_text_answers=max_text_answers)
    logger.info(
        "Window: sheet rows %s-%s, %d rows, %d responses, %d need attention%s",
        window.first_row,
        window.last_row,
        digest.rows,
        digest.responses,
        len(digest.needs_attention),
        " (resumed from an unfinished run)" if window.resumed else "",
    )
    context = digest_context(digest, window, form=form, timezone=timezone, now=now)
    key = window_key(stream, window)
    result.update(
        rows=digest.rows,
        responses=digest.responses,
        questions=digest.questions,
        needs_attention=digest.needs_attention[:RESULT_MAX_ATTENTION],
        needs_attention_total=len(digest.needs_attention),
        deliveries=[],
        notion_page_id=None,
        notion_url=None,
        notion=None,
        watermark={"status": "unchanged", "row": (mark.position or {}).get("row")},
    )

    if not dry_run:
        hold_watermark(AUTOMATION, stream, window.as_pending())
        result["watermark"]["status"] = "held"
    if database is not None and notion is not None and notion_block:
        properties, blocks = notion_page_content(database, context, locale)
        page = NotionPageExecutor(notion, notion_block)
        [outcome] = perform_effects(
            [
                Intent(
                    key=notion_key(key),
                    automation=AUTOMATION,
                    kind="notion_page",
                    target=database.database_id,
                    payload={
                        "data_source_id": database.data_source_id,
                        "properties": properties,
                        "blocks": blocks,
                    },
                    route=Route((page.name,)),
                    label="digest page",
                    rule_id=ENTRY.rule("notion-page"),
                )
            ],
            {page.name: page},
            dry_run=dry_run,
        )
        result["notion"] = {
            "status": outcome.status,
            "blocks": len(blocks),
            "page_id": outcome.remote_id,
            "url": page_link(notion, notion_block, outcome.remote_id)
            if outcome.remote_id
            else None,
            "recovered": outcome.recovered,
            "error": outcome.error,
        }
        # The page's own outcome (and a dry run's outline of it) in the result's effects.
        result["effects"] = [outcome]
        if not outcome.settled:
            result["artifacts"] = _publish(
                result,
                locale,
                digest_text=digest_markdown(context, locale),
                empty=False,
                checked=checked,
            )
            raise DeliveryFailed(
                f"the Notion page was not created ({outcome.status}: {outcome.error}); nothing "
                f"was sent and the watermark stays before sheet row {window.first_row}, so the "
                "next run digests the same rows",
                FormDigestResult(**result).as_result(),
            )
        if outcome.remote_id:
            result.update(notion_page_id=outcome.remote_id, notion_url=result["notion"]["url"])

    message = build_digest_message(context, key=key, locale=locale, notion_url=result["notion_url"])
    if not dry_run:
        # Before delivering: the snapshot says what this run meant to send; the ledger says
        # what went (`moltbot shadow` compares a replay with both).
        record_run_input(
            AUTOMATION,
            shadow.KIND,
            shadow.snapshot(
                window,
                layout,
                form=form,
                stream=stream,
                max_text_answers=max_text_answers,
                notion_url=result["notion_url"],
                now=now,
                timezone=timezone,
                locale=locale,
            ),
            shadow.effects(message),
        )
    result["deliveries"] = deliver(message, routes, destinations, dry_run=dry_run)

    if not dry_run and not unsettled(result["deliveries"]):
        advanced = advance_watermark(AUTOMATION, stream, window.position, expected=mark.position)
        result["watermark"] = {"status": "advanced", "row": (advanced.position or {}).get("row")}
    result["artifacts"] = _publish(
        result, locale, digest_text=message.markdown, empty=False, checked=checked
    )
    return _finish(result)


def _window_json(window: ResponseWindow, timezone: str) -> dict[str, Any]:
    def local(moment: datetime | None) -> str | None:
        return None if moment is None else pd.Timestamp(moment).tz_convert(timezone).isoformat()

    return {
        "start": local(window.start),
        "end": local(window.end),
        "first_row": window.first_row,
        "last_row": window.last_row,
        "resumed": window.resumed,
        "realigned": window.realigned,
    }


def _finish(result: dict[str, Any]) -> dict[str, Any]:
    return finish_run(
        FormDigestResult(**result),
        then="; the watermark stays, so the next run retries them and skips the channels that "
        "have the digest",
    )


def window_when(window: dict[str, Any], checked: str) -> str:
    """The responses window of a result as `2026-12-01 09:00 – 2026-12-03 20:55` (local times),
    or `checked` (the time of the check) when the window is empty."""
    start, end = window.get("start"), window.get("end")
    if not start or not end:
        return checked
    first, last = (
        datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M") for moment in (start, end)
    )
    return first if first == last else f"{first} – {last}"


def _publish(
    result: dict[str, Any],
    locale: str,
    *,
    digest_text: str | None,
    empty: bool,
    checked: str,
) -> list[dict[str, Any]]:
    # A dry run's preview stays on its own run page: it must not become the latest version of
    # the keyed artifact analysts follow.
    key = None if result["dry_run"] else ARTIFACT_KEY
    notion = result.get("notion") or {}
    summary = run_summary(
        locale,
        form=result["form"],
        dry_run=result["dry_run"],
        empty=empty,
        responses=result["responses"],
        first_row=result["window"]["first_row"],
        last_row=result["window"]["last_row"],
        needs_attention_total=result["needs_attention_total"],
        notion={"status": notion["status"], "url": notion.get("url")} if notion else None,
        deliveries=result["deliveries"],
        watermark=result["watermark"]["status"],
    )
    text = summary if digest_text is None else f"{summary}\n---\n\n{digest_text}"
    window = result["window"]
    rows = (
        "no new responses"
        if empty
        else f"sheet rows {window['first_row']}–{window['last_row']}, "
        f"{result['responses']:,} responses"
    )
    description = artifact_description(
        AUTOMATION,
        window_when(window, checked),
        result["form"],
        rows,
        dry_run=result["dry_run"],
    )
    # Free-text answers may hold e-mail addresses and phone numbers: none reach the UI.
    artifact_id = publish_markdown(key, mask_text(text), description=mask_text(description))
    return [{"key": key, "id": artifact_id}]
