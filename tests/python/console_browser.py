"""Drives the gateway's web console (`/console`) in a real browser for `test_console_e2e.py`:
Python Playwright with Debian's `chromium` package (never a downloaded browser), axe-core from
`axe-playwright-python`. A `ConsoleBrowser` opens pages that record, for the whole module, what
the security checks look at afterwards (browser console messages, every request the browser
made, Content-Security-Policy violations), and measure layout shift with a
PerformanceObserver."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from gateway_process import REPO

SCREENSHOTS = REPO / "target" / "console-screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
VIEWS = ["keys", "usage", "audit", "models", "announcements"]
# What shows that a view has been drawn with its data (the contract's ids).
VIEW_READY = {
    "keys": "#keys-table",
    "usage": "#usage-total",
    "audit": "#audit-table",
    "models": "#models-table tr[data-model]",
    "announcements": "#announcements-list",
}
TOKEN_STORAGE_KEY = "gateway-console-token"

expect.set_options(timeout=15_000)

# Runs in every page before its own scripts (through the DevTools protocol, so the page's CSP
# does not apply to it): sums the layout shifts not caused by input, and reports every CSP
# violation to Python through the `__reportCsp` binding.
INIT_SCRIPT = """
(() => {
  window.__layoutShift = 0;
  window.__layoutShifts = [];
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        if (entry.hadRecentInput) continue;
        window.__layoutShift += entry.value;
        window.__layoutShifts.push({
          value: entry.value,
          sources: (entry.sources || []).map((s) => s.node
            ? (s.node.id ? '#' + s.node.id : s.node.nodeName) : '?'),
        });
      }
    }).observe({type: 'layout-shift', buffered: true});
  } catch (error) {
    window.__layoutShift = -1;
  }
  document.addEventListener('securitypolicyviolation', (event) => {
    if (window.__reportCsp) window.__reportCsp({
      directive: event.effectiveDirective || event.violatedDirective,
      blocked: event.blockedURI,
      sample: event.sample,
      source: event.sourceFile,
      line: event.lineNumber,
      page: location.href,
    });
  }, true);
})();
"""


def chromium_executable() -> str:
    """Debian's Chromium (`apt-get install chromium`, which scripts/setup.sh --test does);
    `CONSOLE_CHROMIUM` names another build."""
    for candidate in [os.environ.get("CONSOLE_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium", "/usr/lib/chromium/chromium"]:
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(
        "no Chromium: run scripts/setup.sh --test (it installs Debian's chromium package) or "
        "set CONSOLE_CHROMIUM to a Chromium binary"
    )


@dataclass
class Request:
    """One request the browser made, as the page sent it."""

    method: str
    url: str
    headers: dict


@dataclass
class Records:
    """Everything the browser showed or sent during the module, for the leak checks."""

    console_messages: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    csp_violations: list[dict] = field(default_factory=list)


class ConsoleBrowser:
    """One Chromium for the module; `page()` opens a fresh context (its own sessionStorage)."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.records = Records()
        self._playwright = sync_playwright().start()
        try:
            self.browser: Browser = self._playwright.chromium.launch(
                executable_path=chromium_executable(), headless=True,
            )
        except Exception:
            self._playwright.stop()
            raise
        self.pages: list[ConsolePage] = []

    def page(self, viewport: dict = DESKTOP, color_scheme: str = "light",
             base_url: str | None = None) -> ConsolePage:
        context = self.browser.new_context(
            viewport=viewport, color_scheme=color_scheme, timezone_id="UTC", locale="en-US",
        )
        page = ConsolePage(self, context, base_url or self.base_url)
        self.pages.append(page)
        return page

    def close(self) -> None:
        for page in self.pages:
            page.close()
        self.browser.close()
        self._playwright.stop()


class ConsolePage:
    """A page in its own browser context, recording its console messages, requests and CSP
    violations (into the browser's `records` and its own lists)."""

    def __init__(self, owner: ConsoleBrowser, context, base_url: str):
        self.owner = owner
        self.context = context
        self.base_url = base_url
        self.csp_violations: list[dict] = []
        self.console_messages: list[str] = []
        self.page_errors: list[str] = []
        self._in_flight = 0
        context.expose_binding("__reportCsp", self._on_csp)
        context.add_init_script(INIT_SCRIPT)
        self.page: Page = context.new_page()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)
        self.page.on("request", self._on_request)
        self.page.on("requestfinished", self._on_done)
        self.page.on("requestfailed", self._on_done)
        self._closed = False

    # -- recording

    def _on_csp(self, _source, violation: dict) -> None:
        self.csp_violations.append(violation)
        self.owner.records.csp_violations.append(violation)

    def _on_page_error(self, error) -> None:
        self.page_errors.append(str(error))
        self.owner.records.page_errors.append(str(error))

    def _on_console(self, message) -> None:
        text = f"{message.type}: {message.text}"
        self.console_messages.append(text)
        self.owner.records.console_messages.append(text)

    def _on_request(self, request) -> None:
        self._in_flight += 1
        self.owner.records.requests.append(
            Request(request.method, request.url, dict(request.headers))
        )

    def _on_done(self, _request) -> None:
        self._in_flight = max(0, self._in_flight - 1)

    def settle(self, quiet_ms: int = 300, timeout_s: float = 15.0) -> None:
        """Waits until the page has had no request in flight for `quiet_ms`."""
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
            if self._in_flight:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_ms / 1000:
                return
        raise AssertionError(f"requests still in flight after {timeout_s} s")

    # -- navigation

    @property
    def console_url(self) -> str:
        return self.base_url + "/console"

    def open(self) -> None:
        """Loads the console; a fresh context shows the sign-in form."""
        self.page.goto(self.console_url)
        expect(self.page.locator("#sign-in")).to_be_visible()
        self.settle()

    def sign_in(self, token: str) -> None:
        """Signs in with a management token through the form, as a person does."""
        if "/console" not in self.page.url:
            self.open()
        self.page.locator("#token").fill(token)
        self.page.locator("#sign-in").get_by_role("button", name="Sign in").click()
        expect(self.page.locator("#principal")).not_to_be_empty()
        expect(self.page.locator("#project option").first).to_be_attached()
        self.settle()

    def show(self, view: str) -> None:
        """Switches to a view with its navigation link and waits for its data."""
        self.page.locator(f'nav a[href="#/{view}"]').click()
        self._wait_for_view(view)

    def reload_view(self, view: str) -> None:
        """Loads the console afresh on a view (the session comes back from sessionStorage),
        so that the layout shift the page reports afterwards is that of this view's load."""
        self.page.evaluate("hash => { location.hash = hash; }", f"#/{view}")
        self.page.reload()
        if self.page.locator("#sign-in").is_visible():
            raise AssertionError(
                "after a reload the console shows the sign-in form: it did not take the session "
                f"back from sessionStorage ({TOKEN_STORAGE_KEY})"
            )
        self._wait_for_view(view)

    def _wait_for_view(self, view: str) -> None:
        expect(self.page.locator(f"#view-{view}")).to_be_visible()
        expect(self.page.locator(f'nav a[href="#/{view}"]')).to_have_attribute(
            "aria-current", "page"
        )
        expect(self.page.locator(VIEW_READY[view]).first).to_be_visible()
        self.settle()

    # -- measurements

    def text(self) -> str:
        """What the page shows (rendered text) and its whole DOM (hidden views included)."""
        return self.page.evaluate("document.body.innerText") + "\n" + self.page.content()

    def layout_shift(self) -> tuple[float, list]:
        return (self.page.evaluate("window.__layoutShift"),
                self.page.evaluate("window.__layoutShifts"))

    def horizontal_overflow(self) -> int:
        """How many pixels the page is wider than the window (0: no sideways scrolling)."""
        return self.page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"
        )

    def screenshot(self, name: str, full_page: bool = True, mask: tuple[str, ...] = ()) -> Path:
        """Saves target/console-screenshots/NAME.png; `mask` selectors are painted over (a
        key's secret has no place in a CI artifact)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled",
                             mask=[self.page.locator(selector) for selector in mask])
        return path

    def axe(self, label: str) -> tuple[list[str], list[str]]:
        """Runs axe-core on the page as it is; returns (serious or critical violations, the
        others), each as readable lines."""
        from axe_playwright_python.sync_playwright import Axe

        results = Axe().run(self.page)
        assert results.response["testEngine"]["name"] == "axe-core"
        assert len(results.response["passes"]) >= 10, "axe-core checked next to nothing"
        serious, others = [], []
        for violation in results.response["violations"]:
            targets = "; ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
            line = (f"[{label}] {violation['id']} ({violation['impact']}): "
                    f"{violation['help']} — {len(violation['nodes'])} node(s): {targets}")
            (serious if violation["impact"] in ("serious", "critical") else others).append(line)
        return serious, others

    def storage(self) -> dict:
        """localStorage, sessionStorage and document.cookie as the page sees them."""
        return self.page.evaluate("""() => ({
            local: Object.fromEntries(Object.entries(localStorage)),
            session: Object.fromEntries(Object.entries(sessionStorage)),
            cookie: document.cookie,
        })""")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.context.close()
