"""The Prefect UI in a real headless Chromium: a daily-report run reads well, its chart loads."""

from __future__ import annotations

import contextvars
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import prefect
import pytest
from prefect.logging.handlers import APILogHandler

from demo.sample_orders import write_sample_orders
from flows.daily_report.flow import daily_report
from moltbot.runlabels import run_tags
from tests.e2e.servers import HANG_GUARD_SECONDS, PrefectServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

REPORT_DATE = date(2026, 11, 30)
CHART_ALT = "Revenue, last 28 days"
REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Both Prefect UIs are served: v2 is what a browser gets from `/`, v1 what the links in Prefect's
# logs open. v1 shows every tag of a run in its header. v2 lists them under Details, folding
# those it measures as not fitting into a "+N" badge (shown on hover): there a tag is looked for
# in the list, shown or folded. Per UI: base path, run page tab, tag selector, tag state.
UIS = {
    "v1": ("", "", '.p-tag:text-is("{tag}")', "visible"),
    "v2": (
        "/v2",
        "?tab=Details",
        'dl:has(> dt:text-is("Tags")) [data-slot="badge"][title="{tag}"]',
        "attached",
    ),
}


class PrefectServerWithUI(PrefectServer):
    """The e2e `prefect server start` with its UI on (the shared one runs `--no-ui`).

    The UI's static files are copied under `home`, not into the installed Prefect package.
    """

    @property
    def ui_url(self) -> str:
        """Where a browser opens the UI."""
        return f"http://127.0.0.1:{self.port}"

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.ui = True

    def extra_server_env(self) -> dict[str, str]:
        """The UI on, its static files under `home`, its API URL this server's."""
        return {
            "PREFECT_SERVER_UI_ENABLED": "true",
            "PREFECT_UI_STATIC_DIRECTORY": str(self.home / "ui"),
            "PREFECT_UI_API_URL": self.api_url,
        }


def chromium_path() -> str:
    """The system Chromium (Debian's `chromium`), or skip saying how to get it."""
    found = os.environ.get("MOLTBOT_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if not found:
        pytest.skip(
            "no Chromium to drive: install Debian's `chromium` (as root: apt-get install -y "
            "chromium) or set MOLTBOT_CHROMIUM to a Chromium binary"
        )
    return found


# Read at import: the autouse fixture clears every MOLTBOT_* variable before each test.
ARTIFACTS_SETTING = os.environ.get("MOLTBOT_TEST_ARTIFACTS")


def artifacts_dir() -> Path:
    """Where screenshots go: `MOLTBOT_TEST_ARTIFACTS`, else `.moltbot-test-artifacts/`."""
    folder = Path(ARTIFACTS_SETTING or REPO / ".moltbot-test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def ui_server(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefectServerWithUI]:
    """A Prefect server with its UI (after the browser: without one the test skips at once)."""
    server = PrefectServerWithUI(tmp_path_factory.mktemp("prefect-ui-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless system Chromium driven by playwright (no browser download)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is a dev dependency: run `uv sync`"
    )
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=HANG_GUARD_SECONDS * 1000,
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, ui_server: PrefectServerWithUI) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # Offline and self-contained: the UI's analytics and fonts from the internet are refused.
    context.route("**/*", lambda route: _local_only(route, ui_server.port))
    opened = context.new_page()
    # A guard against a hung page, not a measure of speed: every wait below is for an event.
    opened.set_default_timeout(HANG_GUARD_SECONDS * 1000)
    try:
        yield opened
    finally:
        context.close()


def _local_only(route: Any, port: int) -> None:
    parts = urlsplit(route.request.url)
    if parts.hostname == "127.0.0.1" and parts.port == port:
        route.continue_()
    else:
        route.abort()


@contextmanager
def screenshot(page: Page, name: str) -> Iterator[None]:
    """Save what the page shows after the block, passed or failed, for the test's record."""
    try:
        yield
    finally:
        page.screenshot(path=str(artifacts_dir() / f"{name}.png"), full_page=True)


def run_report(server: PrefectServerWithUI, orders: Path, *, dry_run: bool) -> dict[str, Any]:
    """Run daily-report against the server as `moltbot run` does; its flow run id and result.

    In a thread of its own: playwright's sync API keeps an event loop running in this one, and
    Prefect would take the flow call for an async one.
    """

    def run() -> dict[str, Any]:
        with (
            server.as_current(),
            prefect.tags(*run_tags("daily-report", dry_run=dry_run, origin="cli")),
        ):
            state = daily_report(
                source=str(orders),
                report_date=REPORT_DATE,
                channels=["outbox"],
                dry_run=dry_run,
                return_state=True,
            )
            result = {"flow_run_id": str(state.state_details.flow_run_id), **state.result()}
            # The run's logs are on the server before a page asks for them.
            APILogHandler().flush()
            return result

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(contextvars.copy_context().run, run).result()


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five weeks of the demo's sample orders ending on the report date."""
    folder = tmp_path_factory.mktemp("orders")
    return write_sample_orders(folder / "orders.csv", end_date=REPORT_DATE, days=35)


def wait_for_tags(page: Page, ui: str, tags: set[str]) -> None:
    """Wait until the run page lists each of `tags` (see `UIS`)."""
    _, _, selector, state = UIS[ui]
    for tag in sorted(tags):
        page.locator(selector.format(tag=tag)).first.wait_for(state=state)


@pytest.mark.parametrize("ui", list(UIS))
def test_the_run_page_shows_the_name_and_tags_and_the_artifact_shows_the_chart(
    ui: str, ui_server: PrefectServerWithUI, orders: Path, page: Page
) -> None:
    result = run_report(ui_server, orders, dry_run=False)
    base, run_tab, _, _ = UIS[ui]
    base_url = f"{ui_server.ui_url}{base}"
    run_name = f"daily-report {REPORT_DATE.isoformat()}"

    with screenshot(page, f"daily-report-{ui}-run"):
        page.goto(f"{base_url}/runs/flow-run/{result['flow_run_id']}{run_tab}")
        page.get_by_text(run_name, exact=True).first.wait_for()
        wait_for_tags(page, ui, {"daily-report", "cli"})

    report_id = result["artifacts"][0]["id"]
    with screenshot(page, f"daily-report-{ui}-artifact"):
        page.goto(f"{base_url}/artifacts/artifact/{report_id}")
        chart = page.locator(f'img[alt="{CHART_ALT}"]')
        chart.wait_for()
        image = chart.element_handle()
        # Loaded or broken, the image is `complete`; only a loaded one has a width.
        page.wait_for_function("img => img.complete", arg=image)
        assert image.evaluate("img => img.naturalWidth") > 0
        assert image.evaluate("img => img.src").startswith("data:image/png;base64,")
        page.get_by_text(f"daily-report {REPORT_DATE.isoformat()} · Daily report").wait_for()

    top_id = result["artifacts"][1]["id"]
    with screenshot(page, f"daily-report-{ui}-top-products"):
        page.goto(f"{base_url}/artifacts/artifact/{top_id}")
        page.get_by_text("Revenue", exact=True).first.wait_for()
        # The header renders before the rows' text: wait for a won amount, not read at once.
        page.locator("td").filter(has_text=re.compile(r"^\s*₩[\d,]+")).first.wait_for()


def test_a_dry_run_is_marked_on_its_run_page_and_its_artifact(
    ui_server: PrefectServerWithUI, orders: Path, page: Page
) -> None:
    result = run_report(ui_server, orders, dry_run=True)
    base, run_tab, _, _ = UIS["v2"]
    base_url = f"{ui_server.ui_url}{base}"

    with screenshot(page, "daily-report-v2-dry-run"):
        page.goto(f"{base_url}/runs/flow-run/{result['flow_run_id']}{run_tab}")
        page.get_by_text(
            f"daily-report {REPORT_DATE.isoformat()} (dry run)", exact=True
        ).first.wait_for()
        wait_for_tags(page, "v2", {"daily-report", "cli", "dry-run"})

    with screenshot(page, "daily-report-v2-dry-run-artifact"):
        page.goto(f"{base_url}/artifacts/artifact/{result['artifacts'][0]['id']}")
        page.get_by_text(f"DRY RUN — daily-report {REPORT_DATE.isoformat()}").first.wait_for()
