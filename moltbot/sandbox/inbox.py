"""The sandbox inbox: what automations sent to the emulators, as HTML pages (live and saved)."""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage, Message
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup, escape

from moltbot.sandbox.jira import IssueSnapshot
from moltbot.sandbox.notion import SANDBOX_ROOT_PAGE_ID, NotionAPIError, plain_text
from moltbot.sandbox.slack import SANDBOX_OPS_WEBHOOK_PATH, SANDBOX_WEBHOOK_PATH, SlackPost
from moltbot.sandbox.smtp import ReceivedMail

if TYPE_CHECKING:
    from moltbot.sandbox.app import SandboxState
    from moltbot.sandbox.server import Sandbox

__all__ = ["MailSource", "inbox_url", "install_inbox", "save_static_inbox"]


class MailSource(Protocol):
    """Where the inbox reads e-mail from: the sandbox's `SmtpSink` (anything with `messages`)."""

    @property
    def messages(self) -> Sequence[ReceivedMail]: ...


def inbox_url(sandbox: Sandbox) -> str:
    """The address of a running sandbox's inbox, e.g. ``http://127.0.0.1:8025/inbox``."""
    return f"{sandbox.base_url}/inbox"


# ---------------------------------------------------------------------------------------------
# Where the pages point: the live server's paths, or the files of a static copy.


class _Links:
    """Addresses of the live inbox (absolute paths on the sandbox server)."""

    index = "/inbox"

    def mail(self, n: int) -> str:
        return f"/inbox/mail/{n}"

    def mail_raw(self, n: int) -> str:
        return f"/inbox/mail/{n}/raw"

    def mail_part(self, n: int, part: _MailPart) -> str:
        return f"/inbox/mail/{n}/part/{quote(part.ref, safe='')}"

    def notion(self, object_id: str) -> str:
        return f"/inbox/notion/{object_id.replace('-', '')}"

    def jira(self, key: str) -> str:
        # The address Jira links have (`<server_url>/browse/KEY`, server_url ending in /jira).
        return f"/jira/browse/{quote(key, safe='')}"

    def href(self, url: str) -> str:
        """Where a link found in the content should point (unchanged on the live server)."""
        return url


class _StaticLinks(_Links):
    """Addresses inside a static copy: files side by side, linked relatively.

    Links in the content that point at the sandbox itself (a Notion page URL, a Jira browse
    link in a Slack message) are pointed at the copy's files, so they work once it stopped.
    """

    index = "index.html"

    def __init__(self, state: SandboxState, mail_count: int, hosts: set[str], port: int | None):
        self._state = state
        self._mail_count = mail_count
        self._hosts = hosts
        self._port = port

    def mail(self, n: int) -> str:
        return f"mail-{n}.html"

    def mail_raw(self, n: int) -> str:
        return f"mail-{n}.eml"

    def mail_part(self, n: int, part: _MailPart) -> str:
        return f"mail-{n}/{part.file_name}"

    def notion(self, object_id: str) -> str:
        return static_notion_name(object_id)

    def jira(self, key: str) -> str:
        return f"jira-{_safe_stem(key)}.html"

    def href(self, url: str) -> str:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return url
        if parts.hostname not in self._hosts or (self._port is not None and port != self._port):
            return url
        path = parts.path.rstrip("/")
        if path in ("", "/inbox"):
            return self.index
        segments = path.strip("/").split("/")
        if len(segments) != 3:
            return url
        place, last = segments[:2], unquote(segments[2])
        if place == ["inbox", "notion"] and _notion_kind(self._state, last) is not None:
            return self.notion(_dashless(last))
        if place == ["jira", "browse"] and _jira_issue(self._state, last) is not None:
            return self.jira(last.upper())
        if place == ["inbox", "mail"] and last.isdigit() and 1 <= int(last) <= self._mail_count:
            return self.mail(int(last))
        return url


# ---------------------------------------------------------------------------------------------
# Small pieces shared by the renderers.

_EMPTY = Markup("")
_SAFE_LINK_SCHEMES = ("http", "https", "mailto")
_SAFE_IMAGE_SCHEMES = ("http", "https")


def _join(pieces: Iterable[Markup]) -> Markup:
    return _EMPTY.join(pieces)


def _safe_url(url: Any, links: _Links, schemes: tuple[str, ...] = _SAFE_LINK_SCHEMES) -> str | None:
    """The URL to put in an attribute, or None when its scheme could run code (``javascript:``)."""
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return links.href(url) if scheme in schemes else None


def _link(url: Any, label: Markup | str, links: _Links) -> Markup:
    target = _safe_url(url, links)
    if target is None:
        return escape(label)
    return Markup('<a href="{}">{}</a>').format(target, label)


def _when(moment: datetime | date | str | None) -> Markup:
    """A timestamp shown in UTC (the sandbox has no user timezone), machine-readable too."""
    if moment is None or moment == "":
        return _EMPTY
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return escape(moment)
    if isinstance(moment, datetime):
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        return Markup('<time datetime="{}">{}</time>').format(
            moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    return Markup('<time datetime="{0}">{0}</time>').format(moment.isoformat())


def _badges(names: Iterable[str]) -> Markup:
    return _join(Markup('<span class="badge">{}</span>').format(name) for name in names)


_PLAIN_URL = re.compile(r"\[([^\[\]|\n]+)\|(https?://[^\]\s]+)\]|(https?://[^\s<>\"'\]]+)")


def _linkified(text: str, links: _Links) -> Markup:
    """Plain text with its URLs (and Jira ``[label|url]`` links) clickable, all else escaped."""
    out: list[Markup] = []
    last = 0
    for match in _PLAIN_URL.finditer(text):
        out.append(escape(text[last : match.start()]))
        label, url, bare = match.groups()
        out.append(_link(url, label, links) if url else _link(bare, bare, links))
        last = match.end()
    out.append(escape(text[last:]))
    return _join(out)


def _page(title: str, body: Markup, links: _Links, *, home: bool = False) -> str:
    nav = (
        _EMPTY
        if home
        else Markup('<p class="crumbs"><a href="{}">← inbox</a></p>').format(links.index)
    )
    return str(Markup(_LAYOUT).format(title=title, css=Markup(_CSS), nav=nav, body=body))


_LAYOUT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<main>
{nav}
{body}
</main>
</body>
</html>
"""

_CSS = """
:root { color-scheme: light; --muted: #616061; --line: #e0e0e0; --accent: #1264a3; }
body { margin: 0; background: #f8f8f8; color: #1d1c1d; font: 15px/1.5 -apple-system,
  BlinkMacSystemFont, "Segoe UI", Roboto, "Apple SD Gothic Neo", "Malgun Gothic",
  "Noto Sans KR", sans-serif; }
main { max-width: 960px; margin: 0 auto; padding: 16px 24px 48px; }
a { color: var(--accent); }
h1 { font-size: 1.6em; margin: 0.4em 0; }
nav.tabs { display: flex; gap: 8px; flex-wrap: wrap; margin: 8px 0 16px; }
nav.tabs a { padding: 4px 12px; border: 1px solid var(--line); border-radius: 16px;
  background: #fff; text-decoration: none; }
section { margin: 24px 0; }
section > h2 { border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.muted, .crumbs, .meta { color: var(--muted); font-size: 0.9em; }
.empty { background: #fff; border: 1px dashed #bbb; border-radius: 8px; padding: 24px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left;
  vertical-align: top; }
th { background: #f2f2f2; }
table.fields th { width: 10em; }
.badge { display: inline-block; background: #eef3f8; border: 1px solid #d3dfeb;
  border-radius: 4px; padding: 0 6px; margin: 0 4px 2px 0; font-size: 0.9em; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; margin: 12px 0; }
.prewrap, .mrkdwn { white-space: pre-wrap; overflow-wrap: anywhere; }
pre { background: #f4f4f4; border: 1px solid var(--line); border-radius: 4px; padding: 8px;
  overflow-x: auto; white-space: pre-wrap; }
code { background: #f4f4f4; border-radius: 3px; padding: 0 3px; color: #c01343; }
pre code { color: inherit; padding: 0; }
.sk-header { font-size: 1.15em; margin: 4px 0; }
.sk-section { display: flex; gap: 12px; margin: 4px 0; }
.sk-main { flex: 1; }
.sk-fields { display: grid; grid-template-columns: 1fr 1fr; gap: 4px 16px; margin-top: 4px; }
.sk-context { color: var(--muted); font-size: 0.85em; margin: 4px 0; display: flex;
  gap: 6px; align-items: center; flex-wrap: wrap; }
.sk-context img { width: 16px; height: 16px; }
.sk-thumb { width: 72px; height: 72px; object-fit: cover; border-radius: 4px; }
.sk-image img { max-width: 100%; max-height: 360px; border-radius: 4px; }
.sk-image figcaption { color: var(--muted); font-size: 0.85em; }
.sk-button { display: inline-block; border: 1px solid #bbb; border-radius: 4px;
  padding: 2px 10px; margin: 4px 4px 0 0; text-decoration: none; color: #1d1c1d; }
.sk-attachment { border-left: 4px solid #ddd; padding-left: 10px; margin: 6px 0; }
.sk-quote { border-left: 4px solid #ddd; padding-left: 8px; }
.sk-unknown, .unknown { color: var(--muted); font-style: italic; }
.fallback { color: var(--muted); font-size: 0.85em; margin: 6px 0 0; }
iframe.mail { width: 100%; height: 70vh; border: 1px solid var(--line); border-radius: 4px;
  background: #fff; }
.callout { display: flex; gap: 8px; background: #f1f1ef; border-radius: 4px;
  padding: 12px; margin: 8px 0; }
.todo input { margin-right: 6px; }
blockquote { border-left: 3px solid #1d1c1d; margin: 8px 0; padding-left: 12px; }
.notion-table th, .notion-table td { white-space: pre-wrap; }
.comment { border-top: 1px solid var(--line); padding: 8px 0; }
"""


# ---------------------------------------------------------------------------------------------
# Slack: mrkdwn and Block Kit, the way Slack would show them (lightly).

# A few shortcodes our templates and common alerts use; others stay as written.
_EMOJI = {
    "warning": "⚠️",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "x": "❌",
    "rotating_light": "🚨",
    "chart_with_upwards_trend": "📈",
    "chart_with_downwards_trend": "📉",
    "bar_chart": "📊",
    "package": "📦",
    "bell": "🔔",
    "memo": "📝",
    "tada": "🎉",
    "ticket": "🎫",
    "email": "📧",
    "calendar": "📅",
    "information_source": "ℹ️",
    "red_circle": "🔴",
    "large_green_circle": "🟢",
    "large_yellow_circle": "🟡",
    "fire": "🔥",
    "eyes": "👀",
}
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")
_FENCE = re.compile(r"```(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_ANGLE = re.compile(r"<([^<>\n]*)>")
# Slack's rule: a marker counts next to a non-word character (or the line's edge) only.
_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?!\s)([^~\n]+?)(?<!\s)~(?![\w~])")


def _emoji(text: str) -> str:
    return _SHORTCODE.sub(lambda m: _EMOJI.get(m.group(1), m.group(0)), text)


def _slack_unescape(text: str) -> str:
    # Senders escape these three in Slack text (api.slack.com/reference/surfaces/formatting).
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _mrkdwn(text: str, links: _Links) -> Markup:
    """Slack mrkdwn as HTML: code, links, mentions, *bold*, _italic_, ~strike~; rest escaped."""
    out: list[Markup] = []
    for i, piece in enumerate(_FENCE.split(text)):
        if i % 2:
            out.append(Markup("<pre>{}</pre>").format(_slack_unescape(piece.strip("\n"))))
        else:
            out.append(Markup("\n").join(_mrkdwn_line(line, links) for line in piece.split("\n")))
    return _join(out)


def _mrkdwn_line(line: str, links: _Links) -> Markup:
    # Nothing but code fences spans lines, so a line is formatted on its own.
    for marker in ("&gt;", ">"):
        if line.startswith(marker):
            quoted = _mrkdwn_inline(line[len(marker) :].lstrip(" "), links)
            return Markup('<span class="sk-quote">{}</span>').format(quoted)
    return _mrkdwn_inline(line, links)


def _mrkdwn_inline(text: str, links: _Links) -> Markup:
    out: list[Markup] = []
    for i, piece in enumerate(_INLINE_CODE.split(text)):
        if i % 2:
            out.append(Markup("<code>{}</code>").format(_slack_unescape(piece)))
            continue
        for j, part in enumerate(_ANGLE.split(piece)):
            out.append(_slack_angle(part, links) if j % 2 else _slack_styled(part))
    return _join(out)


def _slack_styled(text: str) -> Markup:
    escaped = str(escape(_emoji(_slack_unescape(text))))
    # The markers survive escaping unchanged, and only tags are added around escaped text.
    escaped = _BOLD.sub(r"<b>\1</b>", escaped)
    escaped = _ITALIC.sub(r"<i>\1</i>", escaped)
    escaped = _STRIKE.sub(r"<s>\1</s>", escaped)
    return Markup(escaped)


def _slack_angle(inner: str, links: _Links) -> Markup:
    """One ``<…>`` of Slack text: a link, a mention or a special; literal text otherwise."""
    target, _, label = inner.partition("|")
    label = _slack_unescape(label)
    if target.startswith("@"):
        return Markup("<b>@{}</b>").format(label or target[1:])
    if target.startswith("#"):
        return Markup("<b>#{}</b>").format(label or target[1:])
    if target.startswith("!"):
        command = target[1:].split("^", 1)[0]
        return Markup("<b>{}</b>").format(label or f"@{command}")
    url = _slack_unescape(target)
    if _safe_url(url, links) is not None:
        return _link(url, _emoji(label) or url, links)
    return escape(f"<{_slack_unescape(inner)}>")


def _text_object(obj: Any, links: _Links) -> Markup:
    if isinstance(obj, str):
        return _mrkdwn(obj, links)
    if not isinstance(obj, Mapping):
        return _EMPTY
    text = str(obj.get("text", ""))
    return _mrkdwn(text, links) if obj.get("type") == "mrkdwn" else escape(_emoji(text))


def _slack_image(url: Any, alt: Any, css: str, links: _Links) -> Markup:
    src = _safe_url(url, links, _SAFE_IMAGE_SCHEMES)
    alt_text = alt if isinstance(alt, str) else ""
    if src is None:
        return Markup('<span class="sk-unknown">[image: {}]</span>').format(alt_text)
    return Markup('<img class="{}" src="{}" alt="{}">').format(css, src, alt_text)


def _slack_element(element: Any, links: _Links) -> Markup:
    if not isinstance(element, Mapping):
        return _EMPTY
    kind = element.get("type")
    if kind == "image":
        return _slack_image(element.get("image_url"), element.get("alt_text"), "sk-thumb", links)
    if kind in ("mrkdwn", "plain_text"):
        return Markup("<span>{}</span>").format(_text_object(element, links))
    if kind == "button":
        label = _text_object(element.get("text"), links)
        target = _safe_url(element.get("url"), links)
        if target is None:
            return Markup('<span class="sk-button">{}</span>').format(label)
        return Markup('<a class="sk-button" href="{}">{}</a>').format(target, label)
    return Markup('<span class="sk-unknown">[{}]</span>').format(kind or "element")


def _slack_block(block: Any, links: _Links) -> Markup:
    if not isinstance(block, Mapping):
        return _EMPTY
    kind = block.get("type")
    if kind == "header":
        return Markup('<h3 class="sk-header">{}</h3>').format(
            _text_object(block.get("text"), links)
        )
    if kind == "divider":
        return Markup('<hr class="sk-divider">')
    if kind == "section":
        main: list[Markup] = []
        if block.get("text") is not None:
            main.append(
                Markup('<div class="mrkdwn">{}</div>').format(
                    _text_object(block.get("text"), links)
                )
            )
        fields = block.get("fields")
        if isinstance(fields, list) and fields:
            cells = (
                Markup('<div class="mrkdwn">{}</div>').format(_text_object(f, links))
                for f in fields
            )
            main.append(Markup('<div class="sk-fields">{}</div>').format(_join(cells)))
        accessory = _slack_element(block.get("accessory"), links)
        return Markup('<div class="sk-section"><div class="sk-main">{}</div>{}</div>').format(
            _join(main), accessory
        )
    if kind == "context":
        elements = block.get("elements") if isinstance(block.get("elements"), list) else []
        return Markup('<div class="sk-context">{}</div>').format(
            _join(_slack_element(e, links) for e in elements)
        )
    if kind == "image":
        title = block.get("title")
        caption = (
            Markup("<figcaption>{}</figcaption>").format(_text_object(title, links))
            if title
            else _EMPTY
        )
        image = _slack_image(block.get("image_url"), block.get("alt_text"), "", links)
        return Markup('<figure class="sk-image">{}{}</figure>').format(image, caption)
    if kind == "actions":
        elements = block.get("elements") if isinstance(block.get("elements"), list) else []
        return Markup('<div class="sk-actions">{}</div>').format(
            _join(_slack_element(e, links) for e in elements)
        )
    if kind == "rich_text":
        return _slack_rich_text(block.get("elements"), links)
    return Markup('<div class="sk-unknown">[{} block]</div>').format(kind or "unknown")


def _slack_rich_text(elements: Any, links: _Links) -> Markup:
    """The ``rich_text`` block: sections, lists, preformatted text and quotes."""
    out: list[Markup] = []
    for element in elements if isinstance(elements, list) else []:
        if not isinstance(element, Mapping):
            continue
        kind = element.get("type")
        inner = element.get("elements") if isinstance(element.get("elements"), list) else []
        if kind == "rich_text_list":
            tag = Markup("ol" if element.get("style") == "ordered" else "ul")
            items = (
                Markup("<li>{}</li>").format(_slack_rich_text([item], links)) for item in inner
            )
            out.append(Markup("<{0}>{1}</{0}>").format(tag, _join(items)))
        elif kind == "rich_text_preformatted":
            out.append(Markup("<pre>{}</pre>").format(_slack_rich_spans(inner, links)))
        elif kind == "rich_text_quote":
            spans = _slack_rich_spans(inner, links)
            out.append(Markup("<blockquote>{}</blockquote>").format(spans))
        else:
            spans = _slack_rich_spans(inner, links)
            out.append(Markup('<div class="mrkdwn">{}</div>').format(spans))
    return _join(out)


def _slack_rich_spans(spans: list[Any], links: _Links) -> Markup:
    out: list[Markup] = []
    for span in spans:
        if not isinstance(span, Mapping):
            continue
        kind = span.get("type")
        if kind == "text":
            piece = escape(str(span.get("text", "")))
        elif kind == "link":
            url = span.get("url")
            piece = _link(url, str(span.get("text") or url or ""), links)
        elif kind == "emoji":
            name = str(span.get("name", ""))
            piece = escape(_EMOJI.get(name, f":{name}:"))
        elif kind in ("user", "usergroup"):
            piece = Markup("<b>@{}</b>").format(span.get("user_id") or span.get("usergroup_id"))
        elif kind == "channel":
            piece = Markup("<b>#{}</b>").format(span.get("channel_id"))
        elif kind == "broadcast":
            piece = Markup("<b>@{}</b>").format(span.get("range"))
        else:
            continue
        style = span.get("style") if isinstance(span.get("style"), Mapping) else {}
        for flag, tag in (("code", "code"), ("bold", "b"), ("italic", "i"), ("strike", "s")):
            if style.get(flag):
                piece = Markup("<{0}>{1}</{0}>").format(Markup(tag), piece)
        out.append(piece)
    return _join(out)


def _slack_attachment(attachment: Any, links: _Links) -> Markup:
    """A legacy attachment (apprise and older senders use them): colour bar, title, fields."""
    if not isinstance(attachment, Mapping):
        return _EMPTY
    out: list[Markup] = []
    if attachment.get("pretext"):
        out.append(
            Markup('<div class="mrkdwn">{}</div>').format(
                _mrkdwn(str(attachment["pretext"]), links)
            )
        )
    if attachment.get("author_name"):
        out.append(Markup('<div class="meta">{}</div>').format(attachment["author_name"]))
    if attachment.get("title"):
        title = str(attachment["title"])
        out.append(Markup("<b>{}</b>").format(_link(attachment.get("title_link"), title, links)))
    if attachment.get("text"):
        out.append(
            Markup('<div class="mrkdwn">{}</div>').format(_mrkdwn(str(attachment["text"]), links))
        )
    fields = attachment.get("fields")
    if isinstance(fields, list) and fields:
        cells = (
            Markup('<div><b>{}</b><div class="mrkdwn">{}</div></div>').format(
                field.get("title", ""), _mrkdwn(str(field.get("value", "")), links)
            )
            for field in fields
            if isinstance(field, Mapping)
        )
        out.append(Markup('<div class="sk-fields">{}</div>').format(_join(cells)))
    blocks = attachment.get("blocks")
    if isinstance(blocks, list):
        out.extend(_slack_block(block, links) for block in blocks)
    if attachment.get("image_url"):
        out.append(_slack_image(attachment["image_url"], attachment.get("fallback"), "", links))
    if attachment.get("footer"):
        out.append(Markup('<div class="meta">{}</div>').format(attachment["footer"]))
    if not out and attachment.get("fallback"):
        out.append(escape(str(attachment["fallback"])))
    color = attachment.get("color")
    colour = color if isinstance(color, str) and re.fullmatch(r"#?[0-9A-Fa-f]{3,8}", color) else ""
    if colour and not colour.startswith("#"):
        colour = f"#{colour}"
    style = Markup(' style="border-left-color: {}"').format(colour) if colour else _EMPTY
    return Markup('<div class="sk-attachment"{}>{}</div>').format(style, _join(out))


def _slack_message(payload: Mapping[str, Any], links: _Links) -> Markup:
    out: list[Markup] = []
    text = payload.get("text") if isinstance(payload.get("text"), str) else None
    blocks = payload.get("blocks") if isinstance(payload.get("blocks"), list) else None
    if blocks:
        out.extend(_slack_block(block, links) for block in blocks)
        if text:
            # With blocks, Slack shows the text only in notifications.
            out.append(
                Markup('<p class="fallback">Notification text: {}</p>').format(_mrkdwn(text, links))
            )
    elif text:
        shown = escape(text) if payload.get("mrkdwn") is False else _mrkdwn(text, links)
        out.append(Markup('<div class="mrkdwn">{}</div>').format(shown))
    attachments = payload.get("attachments")
    if isinstance(attachments, list):
        out.extend(_slack_attachment(a, links) for a in attachments)
    return _join(out)


def _webhook_label(post: SlackPost) -> str:
    channel = post.payload.get("channel")
    if isinstance(channel, str) and channel:
        return channel
    if post.path == SANDBOX_WEBHOOK_PATH:
        return "sandbox webhook"
    if post.path == SANDBOX_OPS_WEBHOOK_PATH:
        return "ops webhook"
    return f"webhook …{post.path[-6:]}"


def _slack_post(n: int, post: SlackPost, links: _Links) -> Markup:
    username = post.payload.get("username")
    name = username if isinstance(username, str) and username else "moltbot"
    icon = post.payload.get("icon_emoji")
    shown_icon = _emoji(icon) + " " if isinstance(icon, str) and icon else ""
    return Markup(
        '<article class="card slack-post" id="slack-{}">'
        '<div class="meta"><b>{}{}</b> · {} · {}</div>{}</article>'
    ).format(
        n,
        shown_icon,
        name,
        _webhook_label(post),
        _when(post.received_at),
        _slack_message(post.payload, links),
    )


# ---------------------------------------------------------------------------------------------
# E-mail: the list, one page per message, its parts.


@dataclass(frozen=True)
class _MailPart:
    """A part of a message other than its shown body: an inline image or an attachment.

    Attributes:
        ref: its address in the inbox: the Content-ID (without ``<>``), else ``part-<i>``.
        content_id: the Content-ID without ``<>``, when it has one.
        content_type: e.g. ``image/png``.
        file_name: a safe, unique file name for the static copy.
        label: the name shown (its own file name when it has one).
        payload: the decoded bytes.
    """

    ref: str
    content_id: str | None
    content_type: str
    file_name: str
    label: str
    payload: bytes


def _safe_stem(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-")[:60]


def _file_name(raw: str | None, content_type: str, fallback: str, taken: set[str]) -> str:
    """An ASCII file name without path parts, with an extension, not in ``taken``."""
    stem, dot, suffix = (raw or "").rpartition(".")
    if not dot:
        stem, suffix = raw or "", ""
    stem = _safe_stem(stem) or fallback
    suffix = re.sub(r"[^A-Za-z0-9]+", "", suffix)[:10]
    extension = f".{suffix}" if suffix else (mimetypes.guess_extension(content_type) or ".bin")
    name, i = f"{stem}{extension}", 1
    while name.lower() in taken:
        i += 1
        name = f"{stem}-{i}{extension}"
    taken.add(name.lower())
    return name


def _mail_bodies(message: EmailMessage) -> tuple[Message | None, Message | None]:
    return message.get_body(preferencelist=("html",)), message.get_body(preferencelist=("plain",))


def _mail_parts(message: EmailMessage) -> list[_MailPart]:
    html, text = _mail_bodies(message)
    parts: list[_MailPart] = []
    taken: set[str] = set()
    for i, part in enumerate(message.walk()):
        if part.is_multipart() or part is html or part is text:
            continue
        content_id = str(part.get("Content-ID") or "").strip().strip("<>") or None
        ref = content_id or f"part-{i}"
        content_type = part.get_content_type()
        own_name = part.get_filename()
        payload = part.get_payload(decode=True)
        parts.append(
            _MailPart(
                ref=ref,
                content_id=content_id,
                content_type=content_type,
                file_name=_file_name(own_name or content_id, content_type, f"part-{i}", taken),
                label=own_name or content_id or f"part {i}",
                payload=payload if isinstance(payload, bytes) else b"",
            )
        )
    return parts


def _part_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, ValueError):
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""


_CID = re.compile(r"cid:([^\"'\s)>]+)", re.IGNORECASE)


def _with_part_links(html: str, n: int, parts: list[_MailPart], links: _Links) -> str:
    """The HTML body with each ``cid:`` reference pointing at that part in the inbox."""
    by_cid = {part.content_id: part for part in parts if part.content_id}

    def replace(match: re.Match[str]) -> str:
        cid = match.group(1)
        part = by_cid.get(cid) or by_cid.get(unquote(cid))
        return links.mail_part(n, part) if part is not None else match.group(0)

    return _CID.sub(replace, html)


def _header(message: EmailMessage, name: str) -> str:
    return str(message.get(name, "") or "")


def _mail_row(n: int, mail: ReceivedMail, links: _Links) -> Markup:
    message = mail.message
    subject = mail.subject or "(no subject)"
    return Markup(
        '<tr id="mail-{}"><td>{}</td><td>{}</td><td>{}</td><td><a href="{}">{}</a></td></tr>'
    ).format(
        n,
        _when(mail.received_at),
        _header(message, "From") or mail.mail_from,
        _header(message, "To") or ", ".join(mail.rcpt_tos),
        links.mail(n),
        subject,
    )


def _mail_page(n: int, mail: ReceivedMail, links: _Links) -> str:
    message = mail.message
    parts = _mail_parts(message)
    html_part, text_part = _mail_bodies(message)
    rows = [
        ("From", _header(message, "From") or mail.mail_from),
        ("To", _header(message, "To")),
        ("Cc", _header(message, "Cc")),
        ("Envelope to", ", ".join(mail.rcpt_tos)),
        ("Date", _header(message, "Date")),
    ]
    row = Markup("<tr><th>{}</th><td>{}</td></tr>")
    header_rows = _join(row.format(name, value) for name, value in rows if value)
    header_rows += row.format("Received", _when(mail.received_at))
    if html_part is not None:
        html = _with_part_links(_part_text(html_part), n, parts, links)
        # The mail's HTML is someone else's markup: it is shown in a sandboxed frame that runs no
        # scripts (no allow-scripts); same origin only so its images load, from disk too.
        body = Markup(
            '<iframe class="mail" title="message body" '
            'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox" '
            'srcdoc="{}"></iframe>'
        ).format('<base target="_blank"><meta charset="utf-8">' + html)
        if text_part is not None:
            body += Markup("<details><summary>Text part</summary><pre>{}</pre></details>").format(
                _part_text(text_part)
            )
    elif text_part is not None:
        body = Markup('<pre class="mailtext">{}</pre>').format(_part_text(text_part))
    else:
        body = Markup('<p class="muted">This message has no text or HTML body.</p>')
    attachments = _EMPTY
    if parts:
        item = Markup('<li><a href="{}">{}</a> <span class="muted">{} · {} bytes{}</span></li>')
        items = _join(
            item.format(
                links.mail_part(n, part),
                part.label,
                part.content_type,
                len(part.payload),
                " · inline" if part.content_id else "",
            )
            for part in parts
        )
        attachments = Markup("<h2>Parts</h2><ul>{}</ul>").format(items)
    subject = mail.subject or "(no subject)"
    content = Markup(
        '<h1>{}</h1><table class="fields">{}</table><p class="muted"><a href="{}">Raw message'
        "</a></p>{}{}"
    ).format(subject, header_rows, links.mail_raw(n), body, attachments)
    return _page(subject, content, links)


# ---------------------------------------------------------------------------------------------
# Notion: pages with their properties and blocks, databases with their pages.


def _dashless(object_id: str) -> str:
    return object_id.replace("-", "")


def _notion_kind(state: SandboxState, object_id: str) -> str | None:
    """``page``, ``database`` or ``data_source`` for a known id, else None."""
    notion = state.notion
    for kind, lookup in (
        ("page", notion.page),
        ("database", notion.database),
        ("data_source", notion.data_source),
    ):
        try:
            lookup(object_id)
        except NotionAPIError:
            continue
        return kind
    return None


def _title_of(page: Mapping[str, Any]) -> str:
    for prop in page.get("properties", {}).values():
        if prop.get("type") == "title":
            return plain_text(prop.get("title") or []) or "Untitled"
    return "Untitled"


def _notion_rich(items: Any, links: _Links) -> Markup:
    out: list[Markup] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        text = item.get("plain_text")
        if not isinstance(text, str):
            text = str((item.get("text") or {}).get("content", ""))
        piece = escape(text)
        annotations = item.get("annotations") or {}
        if item.get("type") == "equation" or annotations.get("code"):
            piece = Markup("<code>{}</code>").format(piece)
        for flag, tag in (
            ("bold", "strong"),
            ("italic", "em"),
            ("strikethrough", "s"),
            ("underline", "u"),
        ):
            if annotations.get(flag):
                piece = Markup("<{0}>{1}</{0}>").format(Markup(tag), piece)
        href = item.get("href")
        out.append(_link(href, piece, links) if href else piece)
    return _join(out)


def _notion_value(prop: Mapping[str, Any], links: _Links) -> Markup:
    kind = prop.get("type")
    value = prop.get(kind) if isinstance(kind, str) else None
    if kind in ("title", "rich_text"):
        return _notion_rich(value, links)
    if value is None or value == []:
        return _EMPTY
    if kind in ("select", "status"):
        return _badges([str(value.get("name", ""))])
    if kind == "multi_select":
        return _badges(str(option.get("name", "")) for option in value)
    if kind == "date":
        end = value.get("end")
        return escape(f"{value.get('start')} → {end}" if end else str(value.get("start")))
    if kind == "checkbox":
        return Markup("☑ yes") if value else Markup("☐ no")
    if kind == "url":
        return _link(value, str(value), links)
    if kind == "email":
        return _link(f"mailto:{value}", str(value), links)
    if kind in ("created_time", "last_edited_time"):
        return _when(str(value))
    if isinstance(value, str | int | float):
        return escape(str(value))
    return escape(json.dumps(value, ensure_ascii=False))


def _notion_blocks(blocks: Sequence[Any], links: _Links) -> Markup:
    out: list[Markup] = []
    i = 0
    while i < len(blocks):
        kind = blocks[i].get("type") if isinstance(blocks[i], Mapping) else None
        if kind in ("bulleted_list_item", "numbered_list_item"):
            tag = Markup("ul" if kind == "bulleted_list_item" else "ol")
            items: list[Markup] = []
            while i < len(blocks) and blocks[i].get("type") == kind:
                block = blocks[i]
                items.append(
                    Markup("<li>{}{}</li>").format(
                        _notion_rich(block[kind].get("rich_text"), links),
                        _notion_blocks(block.get("children") or [], links),
                    )
                )
                i += 1
            out.append(Markup("<{0}>{1}</{0}>").format(tag, _join(items)))
            continue
        out.append(_notion_block(blocks[i], links))
        i += 1
    return _join(out)


def _notion_block(block: Any, links: _Links) -> Markup:
    if not isinstance(block, Mapping):
        return _EMPTY
    kind = str(block.get("type"))
    payload = block.get(kind) if isinstance(block.get(kind), Mapping) else {}
    text = _notion_rich(payload.get("rich_text"), links)
    children = _notion_blocks(block.get("children") or [], links)
    nested = Markup('<div class="nested">{}</div>').format(children) if children else _EMPTY
    if kind == "paragraph":
        return Markup('<p class="prewrap">{}</p>{}').format(text, nested)
    if kind.startswith("heading_") and kind[-1] in "123":
        tag = Markup(f"h{int(kind[-1]) + 1}")
        return Markup("<{0}>{1}</{0}>{2}").format(tag, text, nested)
    if kind == "to_do":
        checked = Markup(" checked") if payload.get("checked") else _EMPTY
        return Markup('<div class="todo"><input type="checkbox" disabled{}>{}</div>{}').format(
            checked, text, nested
        )
    if kind == "toggle":
        return Markup("<details><summary>{}</summary>{}</details>").format(text, children)
    if kind == "quote":
        return Markup('<blockquote class="prewrap">{}{}</blockquote>').format(text, nested)
    if kind == "callout":
        icon = payload.get("icon") if isinstance(payload.get("icon"), Mapping) else {}
        emoji = icon.get("emoji") if isinstance(icon.get("emoji"), str) else "💡"
        return Markup(
            '<div class="callout"><span class="icon">{}</span><div class="prewrap">{}{}</div></div>'
        ).format(emoji, text, nested)
    if kind == "code":
        caption = _notion_rich(payload.get("caption"), links)
        return Markup('<pre><code>{}</code></pre><p class="muted">{}</p>').format(
            plain_text(payload.get("rich_text") or []), caption
        )
    if kind == "divider":
        return Markup("<hr>")
    if kind == "table":
        return _notion_table(payload, block.get("children") or [], links)
    if kind == "bookmark":
        url = payload.get("url")
        caption = _notion_rich(payload.get("caption"), links)
        shown = _link(url, str(url), links)
        return Markup('<p class="bookmark">🔖 {} {}</p>').format(shown, caption)
    return Markup('<p class="unknown">[{} block]</p>').format(kind)


def _notion_table(payload: Mapping[str, Any], rows: Sequence[Any], links: _Links) -> Markup:
    column_header = bool(payload.get("has_column_header"))
    row_header = bool(payload.get("has_row_header"))
    out: list[Markup] = []
    for r, row in enumerate(rows):
        cells = (row.get("table_row") or {}).get("cells") if isinstance(row, Mapping) else None
        shown: list[Markup] = []
        for c, cell in enumerate(cells or []):
            tag = Markup("th" if (column_header and r == 0) or (row_header and c == 0) else "td")
            shown.append(Markup("<{0}>{1}</{0}>").format(tag, _notion_rich(cell, links)))
        out.append(Markup("<tr>{}</tr>").format(_join(shown)))
    return Markup('<table class="notion-table">{}</table>').format(_join(out))


def _notion_parent(state: SandboxState, page: Mapping[str, Any], links: _Links) -> Markup:
    parent = page.get("parent") or {}
    notion = state.notion
    try:
        if parent.get("type") == "data_source_id":
            database_id = (
                parent.get("database_id")
                or notion.data_source(parent["data_source_id"])["parent"]["database_id"]
            )
            database = notion.database(database_id)
            name = plain_text(database.get("title") or []) or "Untitled database"
            return Markup('<a href="{}">{}</a>').format(links.notion(database_id), name)
        if parent.get("type") == "page_id":
            above = notion.page(parent["page_id"])
            return Markup('<a href="{}">{}</a>').format(
                links.notion(parent["page_id"]), _title_of(above)
            )
    except (NotionAPIError, KeyError):
        pass
    return Markup("workspace")


def _notion_schema(state: SandboxState, page: Mapping[str, Any]) -> list[str]:
    """Property names in the order of the page's data source schema (its own order otherwise)."""
    names = list(page.get("properties", {}))
    data_source_id = (page.get("parent") or {}).get("data_source_id")
    if data_source_id:
        try:
            schema = list(state.notion.data_source(data_source_id)["properties"])
        except NotionAPIError:
            schema = []
        names = [n for n in schema if n in names] + [n for n in names if n not in schema]
    return names


def _notion_page_view(state: SandboxState, page: Mapping[str, Any], links: _Links) -> str:
    notion = state.notion
    title = _title_of(page)
    rows = _join(
        Markup("<tr><th>{}</th><td>{}</td></tr>").format(name, _notion_value(prop, links))
        for name in _notion_schema(state, page)
        if (prop := page["properties"][name]).get("type") != "title"
    )
    try:
        blocks = notion.children(page["id"])
    except NotionAPIError:
        blocks = []
    sub_pages = [
        other
        for other in notion.pages()
        if (other.get("parent") or {}).get("page_id") == page["id"]
    ]
    databases = [
        database
        for database in notion.databases()
        if (database.get("parent") or {}).get("page_id") == page["id"]
    ]
    below = _join(
        Markup('<li><a href="{}">{}</a></li>').format(links.notion(p["id"]), _title_of(p))
        for p in sub_pages
    ) + _join(
        Markup('<li>🗂 <a href="{}">{}</a></li>').format(
            links.notion(d["id"]), plain_text(d.get("title") or []) or "Untitled database"
        )
        for d in databases
    )
    trashed = Markup(' <span class="badge">in trash</span>') if page.get("in_trash") else _EMPTY
    content = Markup(
        '<p class="muted">Notion page in {} · created {} · edited {}{}</p><h1>{}</h1>'
        '<table class="fields">{}</table><div class="notion-content">{}</div>{}'
    ).format(
        _notion_parent(state, page, links),
        _when(page.get("created_time")),
        _when(page.get("last_edited_time")),
        trashed,
        title,
        rows,
        _notion_blocks(blocks, links),
        Markup("<h2>Inside</h2><ul>{}</ul>").format(below) if below else _EMPTY,
    )
    return _page(title, content, links)


def _notion_database_view(state: SandboxState, database_id: str, links: _Links) -> str:
    notion = state.notion
    database = notion.database(database_id)
    title = plain_text(database.get("title") or []) or "Untitled database"
    sections: list[Markup] = []
    for source in database.get("data_sources", []):
        schema = notion.data_source(source["id"])["properties"]
        columns = list(schema)
        head = _join(Markup("<th>{}</th>").format(name) for name in columns)
        rows: list[Markup] = []
        for page in reversed(notion.pages(source["id"])):
            cells: list[Markup] = []
            for name in columns:
                prop = page["properties"].get(name, {})
                if prop.get("type") == "title":
                    cells.append(
                        Markup('<td><a href="{}">{}</a></td>').format(
                            links.notion(page["id"]), _title_of(page)
                        )
                    )
                else:
                    cells.append(Markup("<td>{}</td>").format(_notion_value(prop, links)))
            rows.append(Markup("<tr>{}</tr>").format(_join(cells)))
        body = (
            _join(rows)
            if rows
            else Markup('<tr><td colspan="{}" class="muted">No pages yet.</td></tr>').format(
                len(columns)
            )
        )
        sections.append(Markup("<table><tr>{}</tr>{}</table>").format(head, body))
    content = Markup('<p class="muted">Notion database</p><h1>🗂 {}</h1>{}').format(
        title, _join(sections)
    )
    return _page(title, content, links)


# ---------------------------------------------------------------------------------------------
# Jira: issues with their fields and comments.


def _jira_issue(state: SandboxState, key: str) -> IssueSnapshot | None:
    try:
        return state.jira.issue(key)
    except KeyError:
        return None


def _jira_view(state: SandboxState, key: str, links: _Links) -> str | None:
    issue = _jira_issue(state, key)
    if issue is None:
        return None
    names = {user.account_id: user.display_name for user in state.jira.users}

    def person(account: str | None) -> str:
        return names.get(account, account) if account else "Unassigned"

    rows = [
        ("Type", escape(issue.issue_type)),
        ("Priority", escape(issue.priority or "")),
        ("Status", _badges([issue.status])),
        ("Labels", _badges(issue.labels)),
        ("Components", _badges(issue.components)),
        ("Assignee", escape(person(issue.assignee))),
        ("Reporter", escape(person(issue.reporter))),
        ("Due date", escape(issue.due_date.isoformat() if issue.due_date else "")),
        ("Created", _when(issue.created)),
        ("Updated", _when(issue.updated)),
    ]
    fields = _join(Markup("<tr><th>{}</th><td>{}</td></tr>").format(n, v) for n, v in rows)
    description = (
        Markup('<div class="card prewrap">{}</div>').format(_linkified(issue.description, links))
        if issue.description
        else Markup('<p class="muted">No description.</p>')
    )
    comments = _join(
        Markup(
            '<article class="comment"><div class="meta"><b>{}</b> · {}</div>'
            '<div class="prewrap">{}</div></article>'
        ).format(person(c.author), _when(c.created), _linkified(c.body, links))
        for c in issue.comments
    ) or Markup('<p class="muted">No comments.</p>')
    content = Markup(
        '<p class="muted">Jira issue · project {}</p><h1>{} {}</h1><table class="fields">{}</table>'
        "<h2>Description</h2>{}<h2>Comments ({})</h2>{}"
    ).format(
        issue.project, issue.key, issue.summary, fields, description, len(issue.comments), comments
    )
    return _page(f"{issue.key} {issue.summary}", content, links)


# ---------------------------------------------------------------------------------------------
# The index.


def _notion_pages(state: SandboxState) -> list[dict[str, Any]]:
    """Pages the automations wrote, newest first (the seeded root page is not news)."""
    return [p for p in reversed(state.notion.pages()) if p["id"] != SANDBOX_ROOT_PAGE_ID]


def _messenger_messages(state: SandboxState) -> list[tuple[str, str, str, datetime | None]]:
    """What the chat and SMS emulators other than Slack's webhooks received, newest first:
    (service, where it went, its text, when)."""
    received: list[tuple[str, str, str, datetime | None]] = []
    for service, hooks in (("JANDI", state.jandi), ("Dooray!", state.dooray)):
        for post in hooks.posts:
            text = post.payload.get("body") or post.payload.get("text") or ""
            where = post.payload.get("email") or post.path.rsplit("/", 1)[0]
            received.append((service, str(where), str(text), post.received_at))
    for message in state.slack.web.messages:
        where = f"#{message.channel}" + (" (thread reply)" if message.thread_ts else "")
        received.append(("Slack bot", where, message.text, getattr(message, "received_at", None)))
    for message in state.kakaowork.messages:
        text = "\n".join(message.block_texts()) or message.text
        received.append(("KakaoWork", message.conversation_id, text, message.received_at))
    for message in state.naverworks.messages:
        where = message.channel_id or message.user_id or ""
        received.append(("NAVER WORKS", where, message.text(), message.received_at))
    for message in state.twilio.messages:
        received.append(("SMS (Twilio)", message.to, message.body, message.received_at))
    for message in state.solapi.messages:
        where = f"{message.to} ({message.type})"
        received.append(("SMS (Solapi)", where, message.text, message.received_at))
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(received, key=lambda row: row[3] or epoch, reverse=True)


def _index(state: SandboxState, mail: MailSource | None, links: _Links) -> str:
    posts = state.slack.posts
    mails = list(mail.messages) if mail is not None else []
    pages = _notion_pages(state)
    issues = state.jira.issues()
    chats = _messenger_messages(state)
    tabs = Markup('<nav class="tabs">{}</nav>').format(
        _join(
            Markup('<a href="#{}">{} ({})</a>').format(anchor, name, count)
            for anchor, name, count in (
                ("slack", "Slack", len(posts)),
                ("mail", "E-mails", len(mails)),
                ("notion", "Notion", len(pages)),
                ("jira", "Jira", len(issues)),
                ("messengers", "Messengers and SMS", len(chats)),
            )
        )
    )
    heading = Markup("<h1>moltbot sandbox inbox</h1>")
    if not (posts or mails or pages or issues or chats):
        empty = Markup(
            '<section class="empty"><h2>Nothing received yet</h2>'
            "<p>When an automation posts to Slack, sends an e-mail, writes a Notion page or opens "
            "a Jira issue in this sandbox, it shows up here, newest first.</p>"
            "<p>Try <code>uv run moltbot demo</code>, or run an automation against the sandbox, "
            "then reload this page.</p>{}</section>"
        ).format(
            _EMPTY
            if mail is not None
            else Markup('<p class="muted">(No SMTP sink is attached: e-mail is not shown.)</p>')
        )
        return _page("moltbot sandbox inbox", heading + empty, links, home=True)

    slack = _join(_slack_post(n, post, links) for n, post in reversed(list(enumerate(posts, 1))))
    mail_rows = _join(
        _mail_row(n, message, links) for n, message in reversed(list(enumerate(mails, 1)))
    )
    notion_rows = _join(
        Markup('<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>').format(
            links.notion(page["id"]),
            _title_of(page),
            _notion_parent(state, page, links),
            _when(page.get("created_time")),
        )
        for page in pages
    )
    names = {user.account_id: user.display_name for user in state.jira.users}
    jira_rows = _join(
        Markup(
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td></tr>"
        ).format(
            links.jira(issue.key),
            issue.key,
            issue.summary,
            issue.issue_type,
            issue.priority or "",
            issue.status,
            names.get(issue.assignee, issue.assignee) if issue.assignee else "Unassigned",
            _badges(issue.labels),
        )
        for issue in reversed(issues)
    )

    def section(anchor: str, title: str, content: Markup, count: int, nothing: str) -> Markup:
        shown = content if count else Markup('<p class="muted">{}</p>').format(nothing)
        return Markup('<section id="{}"><h2>{}</h2>{}</section>').format(anchor, title, shown)

    mail_note = (
        "No e-mail yet." if mail is not None else "No SMTP sink is attached: e-mail is not shown."
    )
    body = _join(
        [
            heading,
            tabs,
            section("slack", "Slack", slack, len(posts), "No Slack posts yet."),
            section(
                "mail",
                "E-mails",
                Markup(
                    "<table><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th></tr>"
                    "{}</table>"
                ).format(mail_rows),
                len(mails),
                mail_note,
            ),
            section(
                "notion",
                "Notion",
                Markup("<table><tr><th>Page</th><th>In</th><th>Created</th></tr>{}</table>").format(
                    notion_rows
                ),
                len(pages),
                "No Notion pages yet.",
            ),
            section(
                "jira",
                "Jira",
                Markup(
                    "<table><tr><th>Key</th><th>Summary</th><th>Type</th><th>Priority</th>"
                    "<th>Status</th><th>Assignee</th><th>Labels</th></tr>{}</table>"
                ).format(jira_rows),
                len(issues),
                "No Jira issues yet.",
            ),
            section(
                "messengers",
                "Messengers and SMS",
                Markup(
                    "<table><tr><th>Received</th><th>Service</th><th>To</th><th>Text</th></tr>"
                    "{}</table>"
                ).format(
                    _join(
                        Markup(
                            '<tr><td>{}</td><td>{}</td><td>{}</td><td class="prewrap">{}</td></tr>'
                        ).format(_when(when), service, where, _linkified(text, links))
                        for service, where, text, when in chats
                    )
                ),
                len(chats),
                "No messenger or SMS message yet.",
            ),
        ]
    )
    return _page("moltbot sandbox inbox", body, links, home=True)


def _notion_view(state: SandboxState, object_id: str, links: _Links) -> str | None:
    kind = _notion_kind(state, object_id)
    if kind == "page":
        return _notion_page_view(state, state.notion.page(object_id), links)
    if kind == "database":
        return _notion_database_view(state, object_id, links)
    if kind == "data_source":
        database_id = state.notion.data_source(object_id)["parent"]["database_id"]
        return _notion_database_view(state, database_id, links)
    return None


def _mail_at(mail: MailSource | None, n: int) -> ReceivedMail | None:
    messages = list(mail.messages) if mail is not None else []
    return messages[n - 1] if 1 <= n <= len(messages) else None


# ---------------------------------------------------------------------------------------------
# Serving it, and saving a static copy.


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def install_inbox(
    app: FastAPI,
    state: SandboxState,
    mail: MailSource | None = None,
    *,
    listing: Mapping[str, Any] | None = None,
) -> None:
    """Add the inbox's routes to the sandbox's root app (before the emulators are mounted).

    ``GET /`` and ``GET /inbox`` list what arrived; ``/inbox/mail/{n}`` (with ``/part/{id}``
    and ``/raw``), ``/inbox/notion/{id}`` and ``/jira/browse/{KEY}`` show one item. A client
    asking ``/`` for ``application/json`` gets `listing` instead.
    """
    links = _Links()

    def not_found(what: str) -> HTMLResponse:
        body = Markup("<h1>Not found</h1><p>{}</p>").format(what)
        return HTMLResponse(_page("Not found", body, links), status_code=404)

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> Response:
        if listing is not None and _wants_json(request):
            return JSONResponse(dict(listing))
        return HTMLResponse(_index(state, mail, links))

    @app.get("/inbox", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(_index(state, mail, links))

    @app.get("/inbox/mail/{n}", include_in_schema=False)
    def mail_page(n: int) -> HTMLResponse:
        found = _mail_at(mail, n)
        if found is None:
            return not_found("No e-mail with that number in the sandbox.")
        return HTMLResponse(_mail_page(n, found, links))

    # Parts and raw sources are the sender's bytes: never sniffed into HTML, never scripted.
    untrusted = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}

    @app.get("/inbox/mail/{n}/raw", include_in_schema=False)
    def mail_raw(n: int) -> Response:
        found = _mail_at(mail, n)
        if found is None:
            return not_found("No e-mail with that number in the sandbox.")
        return Response(found.raw, media_type="text/plain; charset=utf-8", headers=untrusted)

    @app.get("/inbox/mail/{n}/part/{ref:path}", include_in_schema=False)
    def mail_part(n: int, ref: str) -> Response:
        found = _mail_at(mail, n)
        parts = _mail_parts(found.message) if found is not None else []
        part = next((p for p in parts if p.ref == ref), None)
        if part is None:
            return not_found("No such part in that e-mail.")
        headers = {**untrusted, "Content-Disposition": f'inline; filename="{part.file_name}"'}
        return Response(part.payload, media_type=part.content_type, headers=headers)

    @app.get("/inbox/notion/{object_id}", include_in_schema=False)
    def notion_page(object_id: str) -> HTMLResponse:
        page = _notion_view(state, object_id, links)
        if page is None:
            return not_found("No Notion page or database with that id in the sandbox.")
        return HTMLResponse(page)

    # Registered on the root app ahead of the /jira mount, which would answer it otherwise.
    @app.get("/jira/browse/{key}", include_in_schema=False)
    def jira_issue(key: str) -> HTMLResponse:
        page = _jira_view(state, key, links)
        if page is None:
            return not_found("No Jira issue with that key in the sandbox.")
        return HTMLResponse(page)


@dataclass(frozen=True)
class _Received:
    """A fixed list of received mail, as a `MailSource`."""

    messages: tuple[ReceivedMail, ...]


def static_notion_name(object_id: str) -> str:
    """The file a Notion page or database gets in the static copy (`save_static_inbox`)."""
    return f"notion-{object_id.replace('-', '')}.html"


def save_static_inbox(sandbox: Sandbox, directory: Path) -> Path:
    """Write the inbox as files under `directory`, readable from disk once the sandbox stopped.

    Writes ``index.html``, one page per e-mail (``mail-N.html``, its source ``mail-N.eml`` and
    its parts under ``mail-N/``), per Notion page and database (``notion-<id>.html``) and per
    Jira issue (``jira-<KEY>.html``), all linked relatively; links in the content that point
    at the sandbox are pointed at these files. Works on a stopped sandbox too (its state and
    received mail stay until `Sandbox.reset`).

    Returns:
        The path of ``index.html``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = sandbox.state
    # One list of mail for the index and the pages, however much arrives meanwhile.
    mails = _Received(tuple(sandbox.smtp.messages))
    port = sandbox.port if sandbox.running else None
    hosts = {sandbox.host, sandbox.host.strip("[]"), "127.0.0.1", "localhost", "::1"}
    links = _StaticLinks(state, len(mails.messages), hosts, port)

    def write(name: str, text: str) -> None:
        (directory / name).write_text(text, encoding="utf-8")

    # Items are only ever added, so everything the index lists gets its file below.
    index = directory / links.index
    write(links.index, _index(state, mails, links))
    for n, message in enumerate(mails.messages, 1):
        write(links.mail(n), _mail_page(n, message, links))
        (directory / links.mail_raw(n)).write_bytes(message.raw)
        parts = _mail_parts(message.message)
        if parts:
            (directory / f"mail-{n}").mkdir(exist_ok=True)
        for part in parts:
            (directory / links.mail_part(n, part)).write_bytes(part.payload)
    notion_ids: list[str] = [p["id"] for p in state.notion.pages(include_trashed=True)]
    notion_ids += [d["id"] for d in state.notion.databases()]
    for object_id in notion_ids:
        page = _notion_view(state, object_id, links)
        if page is not None:
            write(links.notion(object_id), page)
    for issue in state.jira.issues():
        view = _jira_view(state, issue.key, links)
        if view is not None:
            write(links.jira(issue.key), view)
    return index
