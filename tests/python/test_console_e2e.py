"""End to end: the web console at `/console` in a real browser (Python Playwright driving
Debian's Chromium, see console_browser.py) against the real `gateway` binary, started once for
the module with a deprecated model in its catalog. People sign in with management tokens made
with `gateway admin` (test_auth_e2e's `new_tenant`); the tests check what the console shows
against the management API: keys created, used with the OpenAI SDK, renamed and deleted; usage;
the audit log; roles (a viewer cannot write) and projects (another project's data never shows);
the model catalog's deprecation notices. Then the layout (screenshots at phone and desktop
width, light and dark, under target/console-screenshots/; no sideways scrolling; layout shift),
accessibility (axe-core), and the console's security: its headers and a Content-Security-Policy
the browser enforces, the management API's anti-CSRF check, and that no credential is logged,
stored or put in a URL."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html.parser import HTMLParser

import openai
import pytest
from playwright.sync_api import expect

from console_browser import (
    DESKTOP, PHONE, SCREENSHOTS, TOKEN_STORAGE_KEY, VIEWS, ConsoleBrowser, ConsolePage,
)
from conftest import CHAT_MODEL, MODEL
from gateway_process import Gateway, admin
from test_auth_e2e import (
    REGION, Tenant, assert_management_error, call, new_tenant, seconds_until_rejected,
)


def day(offset: int) -> str:
    """The UTC date `offset` days from today."""
    return (datetime.now(timezone.utc) + timedelta(days=offset)).strftime("%Y-%m-%d")


DEPRECATED = "minilm-sunsetting"
RETIRES = day(100)

CONSOLE_CONFIG = f"""
[server]
request_timeout_secs = 30
shutdown_grace_secs = 5
# the cross-origin checks send requests without a usable credential on purpose
failed_management_authentications_per_minute = 100000

[limits.base]
requests_per_minute = 100000
tokens_per_minute = 100000000

[[models]]
path = "models/all-minilm-l6-v2"

[[models]]
path = "models/smollm2-135m-instruct"
max_context = 1024
max_batch_sequences = 4
kv_budget_tokens = 4096

[[models]]
path = "models/all-minilm-l6-v2"
id = "{DEPRECATED}"
[models.deprecation]
announced = "{day(-10)}"
retires = "{RETIRES}"
successor = "{MODEL}"
"""

# The console's Content-Security-Policy, directive by directive (docs: the console contract).
CSP = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "manifest-src": ["'self'"],
    "base-uri": ["'none'"],
    "form-action": ["'none'"],
    "frame-ancestors": ["'none'"],
}
CONSOLE_FILES = [
    "/console", "/console/", "/console/assets/console.css", "/console/assets/app.js",
    "/console/assets/api.js", "/console/assets/chart.js", "/console/assets/format.js",
    "/console/assets/views/keys.js", "/console/assets/views/usage.js",
    "/console/assets/views/audit.js", "/console/assets/views/models.js",
    "/console/assets/views/announcements.js", "/console/assets/favicon.svg",
]
# Every credential the browser saw (typed in or shown), and the keys the tests used: the last
# test looks for them in the gateway's log, the browser's console and the request URLs.
BROWSER_SECRETS: list[str] = []


# -- fixtures and helpers


@pytest.fixture(scope="module")
def console_gateway(data_dir):
    server = Gateway(data_dir, CONSOLE_CONFIG, config_name="gateway-console.toml")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(console_gateway):
    started = ConsoleBrowser(console_gateway.base_url)
    yield started
    started.close()


def tenant(data_dir, name: str) -> Tenant:
    made = new_tenant(data_dir, name)
    BROWSER_SECRETS.extend([made.token, made.key])
    return made


@pytest.fixture(scope="module")
def owner(data_dir, console_gateway) -> Tenant:
    """The owner of a project of its own, with the key `console-owner-cli` made by the CLI."""
    return tenant(data_dir, "console-owner")


def add_member(data_dir, project: Tenant, role: str) -> tuple[str, str]:
    """Adds a principal with `role` to the project; returns (subject, management token)."""
    subject = f"console-{role}-{uuid.uuid4().hex[:8]}"
    admin(data_dir, "principal", "add", "--project", project.project_id, "--subject", subject,
          "--email", f"{subject}@example.com", "--role", role)
    token = admin(data_dir, "management-token", "create", "--subject", subject)["content"]
    BROWSER_SECRETS.append(token)
    return subject, token


def keys(gateway, project: Tenant, token: str | None = None) -> dict:
    """The project's keys from the management API, by id."""
    status, _, body = call(gateway, "GET", project.tokens_path(), token or project.token)
    assert status == 200, body
    return {key["id"]: key for key in body["tokens"]}


def usage(gateway, project: Tenant, group_by: str) -> dict:
    """The usage API's report over the console's default range (the last 30 days, today
    included; `to` is exclusive)."""
    path = (f"/v1/projects/{project.project_id}/usage?from={day(-29)}&to={day(1)}"
            f"&groupBy={group_by}")
    status, _, body = call(gateway, "GET", path, project.token)
    assert status == 200, body
    return body


def sdk(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def digits(text: str) -> int:
    """A count as the console prints it ("1,234" or "1 234")."""
    only = re.sub(r"\D", "", text)
    assert only, f"no number in {text!r}"
    return int(only)


def submit(form) -> None:
    """Clicks the form's submit button."""
    form.locator('button[type="submit"], button:not([type]), input[type="submit"]').first.click()


def create_key_in_console(page: ConsolePage, name: str, ttl: str | None = None,
                          models: tuple[str, ...] = ()) -> str:
    """Fills and submits #create-key; returns the secret from the dialog (left open)."""
    p = page.page
    p.locator("#key-name").fill(name)
    if ttl is not None:
        p.locator("#key-ttl").select_option(ttl)
    for model in models:
        p.locator(f'input[name="allowed-model"][value="{model}"]').check()
    submit(p.locator("#create-key"))
    expect(p.locator("#secret-dialog")).to_be_visible()
    secret = p.locator("#secret-value").inner_text().strip()
    assert secret.startswith("sk-"), secret
    BROWSER_SECRETS.append(secret)
    return secret


def assert_clean(page: ConsolePage) -> None:
    """No CSP violation and no uncaught script error on the page so far."""
    assert page.csp_violations == [], f"CSP violations during normal use: {page.csp_violations}"
    assert page.page_errors == [], f"uncaught errors in the console: {page.page_errors}"


# -- the console against the API


def test_an_owner_creates_uses_renames_and_deletes_a_key(console_gateway, browser, owner):
    """Sign-in (a wrong token first), a key created in the console (name, TTL, one model)
    whose secret from #secret-value works with the OpenAI SDK; the usage view shows that
    request's tokens and cost as the usage API does; rename and delete (after the dialog's
    confirmation) reach the API, and the deleted key is refused within a second."""
    page = browser.page()
    p = page.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                   origin=console_gateway.base_url)
    page.open()
    expect(p.locator('label[for="token"]')).to_be_visible()
    expect(p.locator("#token")).to_have_attribute("type", "password")
    p.locator("#token").fill("gmt-unknown-" + "A" * 32)
    p.locator("#sign-in").get_by_role("button", name="Sign in").click()
    error = p.locator("#sign-in-error")
    expect(error).to_contain_text("not accepted")
    expect(error).to_contain_text("gmt-")
    expect(error).to_have_attribute("role", "alert")

    page.sign_in(owner.token)
    expect(p.locator("#principal")).to_contain_text(owner.subject)
    options = p.locator("#project option")
    assert options.evaluate_all("os => os.map(o => o.value)") == [owner.project_id]
    expect(options).to_have_text(re.compile(r"console-owner.*\(owner\)"))
    expect(p.locator("#region")).to_have_value(REGION)
    stored = page.storage()
    assert stored["session"] == {TOKEN_STORAGE_KEY: owner.token}, "the token, in sessionStorage"
    assert stored["local"] == {} and stored["cookie"] == ""

    page.show("keys")
    cli_row = p.locator(f'#keys-table tr[data-key-id="{owner.key_id}"]')
    expect(cli_row.locator('[data-field="name"]')).to_have_text("console-owner-cli")

    # create: name, TTL and one allowed model; the secret is shown once and copied
    secret = create_key_in_console(page, "console created", "30d", (CHAT_MODEL,))
    dialog = p.locator("#secret-dialog")
    expect(dialog).to_contain_text("only time")
    p.locator("#copy-secret").click()
    expect(p.locator("#copy-secret")).to_contain_text("Copied")
    assert p.evaluate("navigator.clipboard.readText()") == secret
    p.locator("#secret-done").click()
    expect(dialog).to_be_hidden()
    assert secret not in p.evaluate("document.body.innerText")

    listed = [key for key in keys(console_gateway, owner).values()
              if key["name"] == "console created"]
    assert len(listed) == 1, listed
    created = listed[0]
    assert created["allowedModels"] == [CHAT_MODEL] and created["state"] == "active"
    valid_until = datetime.fromisoformat(created["validUntil"].replace("Z", "+00:00"))
    assert abs((valid_until - datetime.now(timezone.utc)).total_seconds() - 30 * 86400) < 300
    assert secret.startswith(created["maskedContent"].removesuffix("****"))
    row = p.locator(f'#keys-table tr[data-key-id="{created["id"]}"]')
    expect(row.locator('[data-field="name"]')).to_have_text("console created")
    expect(row.locator('[data-field="masked"]')).to_have_text(created["maskedContent"])
    expect(row.locator('[data-field="state"]')).to_contain_text(re.compile("active", re.I))
    expect(row.locator('[data-field="allowedModels"]')).to_contain_text(CHAT_MODEL)
    expect(row.locator(".badge-expired, .badge-expiring")).to_have_count(0)
    expect(row.get_by_role("button", name=re.compile("console created"))).to_have_count(2)

    # the secret works with the OpenAI SDK, for its one model only
    client = sdk(console_gateway, secret)
    answer = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
    )
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=MODEL, input="not allowed")

    # the usage view shows that request as the usage API reports it
    page.show("usage")
    by_model = usage(console_gateway, owner, "model")
    group = {g["group"]: g for g in by_model["groups"]}[CHAT_MODEL]
    assert group["requests"] == 1
    assert group["inputTokens"] == answer.usage.prompt_tokens
    assert group["outputTokens"] == answer.usage.completion_tokens
    assert Decimal(group["cost"]) > 0
    shown = p.locator(f'#usage-by-model tr[data-group="{CHAT_MODEL}"]')
    expect(shown).to_be_visible()
    for name in ("requests", "inputTokens", "cachedInputTokens", "outputTokens"):
        assert digits(shown.locator(f'[data-field="{name}"]').inner_text()) == group[name], name
    expect(shown.locator('[data-field="cost"]')).to_have_text(
        f'{group["cost"]} {group["currency"]}'
    )
    total = by_model["total"][0]
    shown_total = p.locator("#usage-total")
    for name in ("requests", "inputTokens", "outputTokens"):
        assert digits(shown_total.locator(f'[data-field="{name}"]').first.inner_text()) \
            == total[name], name
    expect(shown_total.locator('[data-field="cost"]').first).to_have_text(
        f'{total["cost"]} {total["currency"]}'
    )
    today = {g["group"]: g for g in usage(console_gateway, owner, "day")["groups"]}[day(0)]
    shown_day = p.locator(f'#usage-by-day tr[data-group="{day(0)}"]')
    assert digits(shown_day.locator('[data-field="inputTokens"]').inner_text()) \
        == today["inputTokens"]
    expect(shown_day.locator('[data-field="cost"]')).to_have_text(
        f'{today["cost"]} {today["currency"]}'
    )
    for chart in ("#chart-day", "#chart-model"):
        expect(p.locator(f"{chart} svg[role=img]")).to_have_attribute(
            "aria-label", re.compile("input tokens and .* output tokens"))
        expect(p.locator(f"{chart} figcaption")).not_to_be_empty()
    for chart in ("#chart-cost-day", "#chart-cost-model"):
        expect(p.locator(f"{chart} svg[role=img]")).to_have_attribute(
            "aria-label", re.compile(f"Cost per .* in {today['currency']}"))
        expect(p.locator(f"{chart} svg rect.bar-cost").first).to_be_attached()
    status, _, limits = call(console_gateway, "GET",
                             f"/v1/projects/{owner.project_id}/limits", owner.token)
    assert status == 200 and limits["limits"], limits
    shown_models = p.locator("#limits-table tr[data-model]").evaluate_all(
        "rows => rows.map(r => r.dataset.model)"
    )
    assert sorted(shown_models) == sorted(line["model"] for line in limits["limits"])
    expect(p.locator(f'#limits-table tr[data-model="{CHAT_MODEL}"] '
                     '[data-field="tokensRemaining"]')).to_have_text(re.compile(r"\d"))

    # rename in its dialog
    page.show("keys")
    row.locator('button[data-action="rename"]').click()
    expect(p.locator("#rename-dialog")).to_be_visible()
    p.locator("#rename-input").fill("console renamed")
    p.locator("#rename-save").click()
    expect(p.locator("#rename-dialog")).to_be_hidden()
    expect(row.locator('[data-field="name"]')).to_have_text("console renamed")
    assert keys(console_gateway, owner)[created["id"]]["name"] == "console renamed"

    # delete: cancelling changes nothing, confirming deletes
    row.locator('button[data-action="delete"]').click()
    confirm = p.locator("#delete-dialog")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("console renamed")
    p.locator("#delete-cancel").click()
    expect(confirm).to_be_hidden()
    expect(row).to_have_count(1)
    assert created["id"] in keys(console_gateway, owner)
    row.locator('button[data-action="delete"]').click()
    expect(confirm).to_be_visible()
    p.locator("#delete-confirm").click()
    expect(row).to_have_count(0)
    expect(p.locator("#status")).not_to_be_empty()
    status, headers, body = call(console_gateway, "GET",
                                 f"{owner.tokens_path()}/{created['id']}", owner.token)
    assert_management_error(status, headers, body, 404, "not_found")
    assert seconds_until_rejected(console_gateway, secret) < 1.0
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1,
        )
    expect(cli_row).to_have_count(1)
    assert_clean(page)
    page.close()


def test_keys_about_to_expire_or_expired_are_flagged(console_gateway, browser, owner):
    """A key valid for two more days has `.badge-expiring` ("Expires in N days"), a key whose
    TTL has passed `.badge-expired` ("Expired")."""
    made = {}
    for name, ttl in [("console soon", "2d"), ("console over", "1s")]:
        status, _, body = call(console_gateway, "POST", owner.tokens_path(), owner.token,
                               {"name": name, "ttlDuration": ttl})
        assert status == 202, body
        made[name] = body["token"]
        BROWSER_SECRETS.append(body["token"]["content"])
    over = datetime.fromisoformat(made["console over"]["validUntil"].replace("Z", "+00:00"))
    time.sleep(max(0.0, (over - datetime.now(timezone.utc)).total_seconds()) + 0.3)

    page = browser.page()
    page.sign_in(owner.token)
    page.show("keys")
    soon = page.page.locator(f'tr[data-key-id="{made["console soon"]["id"]}"]')
    expect(soon.locator(".badge-expiring")).to_have_text(re.compile(r"Expires in \d+ days?"))
    expect(soon.locator(".badge-expired")).to_have_count(0)
    gone = page.page.locator(f'tr[data-key-id="{made["console over"]["id"]}"]')
    expect(gone.locator(".badge-expired")).to_have_text("Expired")
    expect(gone.locator(".badge-expiring")).to_have_count(0)
    never = page.page.locator(f'tr[data-key-id="{owner.key_id}"]')
    expect(never.locator(".badge-expired, .badge-expiring")).to_have_count(0)
    assert_clean(page)
    page.close()


def test_a_viewer_sees_keys_but_no_way_to_change_them(data_dir, console_gateway, browser, owner):
    """A viewer's console has no #create-key form and no row buttons but #readonly-note; the
    management API refuses the viewer's writes with 403 all the same."""
    subject, token = add_member(data_dir, owner, "viewer")
    page = browser.page()
    page.sign_in(token)
    p = page.page
    expect(p.locator("#principal")).to_contain_text(subject)
    expect(p.locator("#project option")).to_have_text(re.compile(r"\(viewer\)"))
    page.show("keys")
    expect(p.locator(f'#keys-table tr[data-key-id="{owner.key_id}"]')).to_be_visible()
    expect(p.locator("#readonly-note")).to_be_visible()
    expect(p.locator("#readonly-note")).to_contain_text(
        "Your role on this project is viewer: you can see keys but not create, rename or delete"
    )
    expect(p.locator("#create-key")).to_have_count(0)
    expect(p.locator("#keys-table button")).to_have_count(0)
    expect(p.locator('button[data-action="rename"], button[data-action="delete"]')).to_have_count(0)
    for view in ("usage", "audit"):
        page.show(view)

    before = keys(console_gateway, owner)
    status, headers, body = call(console_gateway, "POST", owner.tokens_path(), token,
                                 {"name": "viewer attempt"})
    assert_management_error(status, headers, body, 403, "insufficient_role")
    status, headers, body = call(console_gateway, "PATCH",
                                 f"{owner.tokens_path()}/{owner.key_id}", token, {"name": "x"})
    assert_management_error(status, headers, body, 403, "insufficient_role")
    assert keys(console_gateway, owner) == before
    assert_clean(page)
    page.close()


def active_element(p) -> dict:
    """The focused element: its id, tag, text and the id of the dialog it is in."""
    return p.evaluate("""() => {
        const e = document.activeElement;
        return {id: e.id, tag: e.tagName, text: (e.innerText || '').trim(),
                dialog: e.closest('dialog')?.id ?? null};
    }""")


def tab_to(p, matches, limit: int = 80) -> dict:
    """Presses Tab until the focused element satisfies `matches`; fails after `limit` presses."""
    for _ in range(limit):
        p.keyboard.press("Tab")
        focused = active_element(p)
        if matches(focused):
            return focused
    raise AssertionError(f"Tab never reached the element; last focused: {focused}")


def test_everything_works_from_the_keyboard(console_gateway, browser, owner):
    """With the keyboard only: the skip link comes first, the token field signs in with
    Enter and focus moves to the view's heading; a navigation link opens its view; a key is
    created with Enter in its form, the secret dialog holds the focus and Escape closes it."""
    page = browser.page()
    p = page.page
    page.open()
    first = tab_to(p, lambda e: True, limit=1)
    assert first["text"] == "Skip to content", first
    tab_to(p, lambda e: e["id"] == "token")
    p.keyboard.type(owner.token)
    p.keyboard.press("Enter")
    expect(p.locator("#view-keys")).to_be_visible()
    expect(p.locator("#keys-title")).to_be_focused()
    page.settle()

    tab_to(p, lambda e: e["tag"] == "A" and e["text"] == "Usage and cost")
    p.keyboard.press("Enter")
    expect(p.locator("#view-usage")).to_be_visible()
    expect(p.locator("#usage-title")).to_be_focused()
    page.settle()

    tab_to(p, lambda e: e["tag"] == "A" and e["text"] == "API keys", limit=120)
    p.keyboard.press("Enter")
    expect(p.locator("#keys-title")).to_be_focused()
    page.settle()
    tab_to(p, lambda e: e["id"] == "key-name", limit=120)
    p.keyboard.type("typed from the keyboard")
    p.keyboard.press("Enter")
    expect(p.locator("#secret-dialog")).to_be_visible()
    BROWSER_SECRETS.append(p.locator("#secret-value").inner_text().strip())
    assert active_element(p)["dialog"] == "secret-dialog", active_element(p)
    for _ in range(4):
        p.keyboard.press("Tab")
        assert active_element(p)["dialog"] == "secret-dialog", "focus left the open dialog"
    p.keyboard.press("Escape")
    expect(p.locator("#secret-dialog")).to_be_hidden()
    expect(p.locator("#keys-table tr", has_text="typed from the keyboard")).to_be_visible()
    assert_clean(page)
    page.close()


def test_another_projects_data_never_shows(data_dir, console_gateway, browser):
    """alice (owner of A) and bob (owner of B), each with used keys of distinct names: alice's
    console offers only project A and no view's text or DOM holds anything of B."""
    alice, bob = tenant(data_dir, "console-iso-alpha"), tenant(data_dir, "console-iso-bravo")
    status, _, body = call(console_gateway, "POST", bob.tokens_path(), bob.token,
                           {"name": "bravo zulu secretive"})
    assert status == 202, body
    bob_key = body["token"]
    BROWSER_SECRETS.append(bob_key["content"])
    for key in (alice.key, bob.key, bob_key["content"]):
        sdk(console_gateway, key).embeddings.create(model=MODEL, input="isolation")
    forbidden = ["console-iso-bravo", "bravo zulu secretive", bob.project_id, bob.key_id,
                 bob_key["id"], bob.subject, bob_key["maskedContent"]]

    page = browser.page()
    page.sign_in(alice.token)
    p = page.page
    assert p.locator("#project option").evaluate_all("os => os.map(o => o.value)") \
        == [alice.project_id]
    seen = {}
    for view in VIEWS:
        page.show(view)
        seen[view] = page.text()
    assert "console-iso-alpha-cli" in seen["keys"], "alice's own key is listed"
    assert alice.key_id in seen["keys"]
    for view, text in seen.items():
        leaked = [value for value in forbidden if value in text]
        assert not leaked, f"the {view} view shows project B's {leaked}"
    assert_clean(page)
    page.close()


def test_a_deprecated_model_is_flagged(console_gateway, browser, owner):
    """The models view shows #deprecation-banner naming the deprecated model, its retirement
    date and successor, and that row's .badge-deprecated; the other rows match the catalog."""
    status, _, catalog = call(console_gateway, "GET", f"/v1/regions/{REGION}/models")
    assert status == 200
    assert all("modelId" in m and "license" in m for m in catalog["models"]), catalog
    by_id = {m["modelId"]: m for m in catalog["models"]}
    assert by_id[DEPRECATED]["lifecycle"]["state"] == "deprecated"

    page = browser.page()
    page.sign_in(owner.token)
    page.show("models")
    p = page.page
    banner = p.locator("#deprecation-banner")
    expect(banner).to_be_visible()
    expect(banner).to_have_attribute("role", "note")
    for text in (DEPRECATED, RETIRES, MODEL):
        expect(banner).to_contain_text(text)
    rows = p.locator("#models-table tr[data-model]")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.model)")) == sorted(by_id)
    row = p.locator(f'#models-table tr[data-model="{DEPRECATED}"]')
    expect(row).to_have_class(re.compile(r"\bdeprecated\b"))
    expect(row.locator(".badge-deprecated")).to_have_text(
        re.compile(rf"Deprecated\s*[—-]\s*retires {RETIRES}, use {re.escape(MODEL)}")
    )
    for current in (MODEL, CHAT_MODEL):
        active = p.locator(f'#models-table tr[data-model="{current}"]')
        expect(active.locator(".badge-deprecated")).to_have_count(0)
        expect(active).not_to_have_class(re.compile(r"\bdeprecated\b"))
    chat = p.locator(f'#models-table tr[data-model="{CHAT_MODEL}"]')
    expect(chat.locator('[data-field="type"]')).to_contain_text("chat")
    expect(chat.locator('[data-field="inputPrice"]')).to_contain_text("0.45")
    expect(chat.locator('[data-field="cachedInputPrice"]')).to_contain_text("0.45")
    expect(chat.locator('[data-field="outputPrice"]')).to_contain_text("0.65")
    expect(chat.locator('[data-field="contextLength"]')).to_have_text(re.compile(r"1[,. ]?024"))
    expect(chat.locator('[data-field="license"]')).to_contain_text(by_id[CHAT_MODEL]["license"])
    source = chat.locator('[data-field="source"] a')
    expect(source).to_have_attribute("href", by_id[CHAT_MODEL]["url"])
    expect(source).to_have_attribute("rel", re.compile(r"(?=.*noopener)(?=.*noreferrer)"))

    page.show("announcements")
    announced = p.locator(f'#announcements-list li[data-model="{DEPRECATED}"]')
    expect(announced).to_contain_text(RETIRES)
    expect(p.locator("#announcements-list li[data-model]")).to_have_count(1)
    assert_clean(page)
    page.close()


def test_the_audit_view_lists_changes_and_the_downloads_match_the_api(
    console_gateway, browser, data_dir
):
    """The audit view shows the events of a key's life as the audit API has them, filters by
    action; the usage CSV and the audit NDJSON downloads hold what the APIs answer."""
    project = tenant(data_dir, "console-audit")
    status, _, body = call(console_gateway, "POST", project.tokens_path(), project.token,
                           {"name": "audited"})
    assert status == 202, body
    key = body["token"]
    BROWSER_SECRETS.append(key["content"])
    one = f"{project.tokens_path()}/{key['id']}"
    assert call(console_gateway, "PATCH", one, project.token, {"name": "audited 2"})[0] == 202
    assert call(console_gateway, "DELETE", one, project.token)[0] == 202
    sdk(console_gateway, project.key).embeddings.create(model=MODEL, input="audit")
    status, _, exported = call(console_gateway, "GET",
                               f"/v1/projects/{project.project_id}/audit-log/export",
                               project.token)
    assert status == 200
    changes = [e for e in exported if e.get("targetTokenId") == key["id"]]
    assert [e["action"] for e in changes] == ["token.create", "token.update", "token.delete"]

    page = browser.page()
    page.sign_in(project.token)
    page.show("audit")
    p = page.page
    for event in changes:
        row = p.locator(f'#audit-table tr[data-event-id="{event["id"]}"]')
        expect(row).to_contain_text(event["action"])
        expect(row).to_contain_text(project.subject)
    p.locator("#audit-action").select_option("token.delete")
    p.locator("#audit-apply").click()
    page.settle()
    expect(p.locator(f'#audit-table tr[data-event-id="{changes[2]["id"]}"]')).to_be_visible()
    expect(p.locator(f'#audit-table tr[data-event-id="{changes[0]["id"]}"]')).to_have_count(0)

    with p.expect_download() as download:
        p.locator("#audit-export").click()
    lines = [json.loads(line) for line in
             download.value.path().read_bytes().decode().splitlines() if line]
    assert changes[2]["id"] in {e["id"] for e in lines}
    assert {e["id"] for e in lines} <= {e["id"] for e in exported}
    assert all(e["projectId"] == project.project_id for e in lines)

    page.show("usage")
    with p.expect_download() as download:
        p.locator("#usage-csv").click()
    text = download.value.path().read_bytes().decode()
    assert text.startswith("group,currency,requests,input_tokens,output_tokens"), text
    answers = []
    for group_by in ("day", "model", "key"):
        path = (f"/v1/projects/{project.project_id}/usage?from={day(-29)}&to={day(1)}"
                f"&groupBy={group_by}")
        status, _, csv_text = call(console_gateway, "GET", path, project.token,
                                   headers={"accept": "text/csv"})
        assert status == 200
        answers.append(csv_text)
    assert text in answers, "the CSV file is not the usage API's CSV of the shown range"
    assert "0." in text, "the embedding request's cost is in it"
    assert_clean(page)
    page.close()


# -- layout and accessibility


def test_screenshots_fit_the_phone_and_do_not_shift(data_dir, console_gateway, browser):
    """Every view and the secret dialog at phone (390 px) and desktop (1440 px) width, light,
    and at phone width dark, saved under target/console-screenshots/; at phone width the page
    never scrolls sideways, and each view's load shifts its layout by less than 0.1 (CLS)."""
    shots = tenant(data_dir, "console-shots")
    sdk(console_gateway, shots.key).chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=6,
    )
    sdk(console_gateway, shots.key).embeddings.create(model=MODEL, input="screenshots")
    problems, saved = [], []
    for label, viewport, scheme in [("phone-light", PHONE, "light"),
                                    ("desktop-light", DESKTOP, "light"),
                                    ("phone-dark", PHONE, "dark")]:
        page = browser.page(viewport, scheme)

        def check(view: str) -> None:
            saved.append(page.screenshot(f"{label}-{view}"))
            if viewport is PHONE and (overflow := page.horizontal_overflow()) > 0:
                problems.append(f"{label} {view}: the page is {overflow} px wider than the phone")
            shift, entries = page.layout_shift()
            if shift >= 0.1 or shift < 0:
                problems.append(f"{label} {view}: layout shift {shift:.3f} ({entries})")

        page.open()
        check("sign-in")
        page.sign_in(shots.token)
        for view in VIEWS:
            page.reload_view(view)
            check(view)
            if view == "keys":
                create_key_in_console(page, f"shot {label.replace('-', ' ')}")
                saved.append(page.screenshot(f"{label}-secret-dialog", full_page=False,
                                             mask=("#secret-value",)))
                page.page.locator("#secret-done").click()
                expect(page.page.locator("#secret-dialog")).to_be_hidden()
        assert_clean(page)
        page.close()
    assert len(saved) == 3 * 7 and all(path.stat().st_size > 1000 for path in saved)
    assert not problems, "\n".join(problems)


def test_axe_finds_no_serious_accessibility_violation(data_dir, console_gateway, browser):
    """axe-core on the sign-in form (also with its error), every view and the secret, rename
    and delete dialogs, in light and dark: no violation of impact serious or critical; the
    others are printed (and written to target/console-screenshots/axe-report.txt)."""
    project = tenant(data_dir, "console-axe")
    sdk(console_gateway, project.key).embeddings.create(model=MODEL, input="accessible")
    serious, others = [], []

    def run(page: ConsolePage, label: str) -> None:
        found_serious, found_others = page.axe(label)
        serious.extend(found_serious)
        others.extend(found_others)

    for scheme in ("light", "dark"):
        page = browser.page(DESKTOP, scheme)
        p = page.page
        page.open()
        run(page, f"{scheme} sign-in")
        p.locator("#token").fill("gmt-unknown-" + "B" * 32)
        p.locator("#sign-in").get_by_role("button", name="Sign in").click()
        expect(p.locator("#sign-in-error")).not_to_be_empty()
        run(page, f"{scheme} sign-in error")
        page.sign_in(project.token)
        for view in VIEWS:
            page.show(view)
            run(page, f"{scheme} {view}")
        page.show("keys")
        create_key_in_console(page, f"axe {scheme}")
        run(page, f"{scheme} secret dialog")
        p.locator("#secret-done").click()
        expect(p.locator("#secret-dialog")).to_be_hidden()
        row = p.locator(f'#keys-table tr[data-key-id="{project.key_id}"]')
        row.locator('button[data-action="rename"]').click()
        expect(p.locator("#rename-dialog")).to_be_visible()
        run(page, f"{scheme} rename dialog")
        p.locator("#rename-cancel").click()
        row.locator('button[data-action="delete"]').click()
        expect(p.locator("#delete-dialog")).to_be_visible()
        run(page, f"{scheme} delete dialog")
        p.locator("#delete-cancel").click()
        expect(p.locator("#delete-dialog")).to_be_hidden()
        page.close()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "axe-report.txt").write_text("\n".join(serious + others) + "\n")
    if others:
        print("axe-core, violations of impact minor or moderate:\n" + "\n".join(others))
    assert not serious, "\n".join(serious)


# -- security


class StaticHtml(HTMLParser):
    """Collects what the CSP would block in a static HTML page."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[dict] = []
        self._in_script = False
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, _ in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>: an inline event handler")
            if name == "style":
                self.problems.append(f"<{tag} style=…>: an inline style")
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True
            if not dict(attrs).get("src"):
                self.problems.append("<script> without src")
        if tag == "style":
            self._in_style = True
            self.problems.append("<style> element")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append(f"inline script content: {data.strip()[:60]!r}")


def parse_csp(value: str) -> dict:
    directives = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def without_comments(source: str) -> str:
    return re.sub(r"/\*.*?\*/|(?<![:\"'])//[^\n]*", "", source, flags=re.S)


def test_every_console_file_carries_the_security_headers(console_gateway):
    """Every console file (the listed ones and whatever the HTML and modules reference) has the
    contract's CSP (no 'unsafe-inline'/'unsafe-eval'), nosniff, frame-ancestors 'none' and
    X-Frame-Options DENY, no-referrer, no-cache, and its content type; the HTML has no inline
    script, event handler or style; no module uses eval, new Function or a style attribute."""
    status, headers, html = call(console_gateway, "GET", "/console")
    assert status == 200 and headers["content-type"].startswith("text/html"), headers
    parser = StaticHtml()
    parser.feed(html)
    assert not parser.problems, parser.problems
    assert any(s.get("type") == "module" for s in parser.scripts), parser.scripts
    referenced = set(re.findall(r'(?:src|href)="(/console/assets/[^"#?]+)"', html))
    referenced |= {"/console/assets/" + path.lstrip("./")
                   for path in re.findall(r'(?:src|href)="(?:\./)?assets/([^"#?]+)"', html)}
    files = set(CONSOLE_FILES) | referenced
    modules = [f for f in files if f.endswith(".js")]
    seen = set()
    while modules:
        path = modules.pop()
        if path in seen:
            continue
        seen.add(path)
        status, _, source = call(console_gateway, "GET", path)
        assert status == 200, path
        code = without_comments(source)
        for pattern in (r"\beval\s*\(", r"\bnew\s+Function\s*\(",
                        r"setAttribute\(\s*['\"]style['\"]", r"\blocalStorage\b",
                        r"\bdocument\.cookie\b"):
            assert not re.search(pattern, code), f"{path} uses {pattern}"
        base = path.rsplit("/", 1)[0]
        for target in re.findall(r"""(?:from|import)\s*\(?\s*["'](\.{1,2}/[^"']+)["']""", code):
            parts = (base + "/" + target).split("/")
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part != ".":
                    resolved.append(part)
            modules.append("/".join(resolved))
    files |= seen
    types = {".css": "text/css", ".js": "javascript", ".svg": "image/svg+xml"}
    for path in sorted(files):
        status, headers, _ = call(console_gateway, "GET", path)
        if path == "/console/" and status in (301, 308):
            assert headers["location"] == "/console", headers  # or the page itself
        else:
            assert status == 200, path
        csp = headers.get("content-security-policy", "")
        assert parse_csp(csp) == CSP, f"{path}: {csp!r}"
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers.get("x-content-type-options") == "nosniff", path
        assert headers.get("x-frame-options", "").upper() == "DENY", path
        assert headers.get("referrer-policy") == "no-referrer", path
        assert "no-cache" in headers.get("cache-control", ""), path
        assert "set-cookie" not in headers, path
        if status != 200:
            continue
        suffix = next((s for s in types if path.endswith(s)), None)
        expected = types[suffix] if suffix else "text/html"
        assert expected in headers.get("content-type", ""), (path, headers.get("content-type"))


def test_the_csp_is_enforced_and_normal_use_violates_nothing(browser, owner):
    """A script element with inline code injected into the signed-in console does not run
    and fires securitypolicyviolation, as does an injected style attribute; walking through
    every view before caused no violation at all."""
    page = browser.page()
    page.sign_in(owner.token)
    for view in VIEWS:
        page.show(view)
    assert_clean(page)
    p = page.page
    p.evaluate("""() => {
        const script = document.createElement('script');
        script.textContent = 'window.__pwned = true;';
        document.head.appendChild(script);
    }""")
    deadline = time.monotonic() + 5
    while not page.csp_violations and time.monotonic() < deadline:
        p.wait_for_timeout(50)
    assert p.evaluate("window.__pwned") is None, "the injected inline script ran"
    assert [v["directive"] for v in page.csp_violations] in (["script-src-elem"], ["script-src"])
    page.csp_violations.clear()
    p.evaluate("""() => {
        const probe = document.createElement('div');
        probe.id = 'csp-probe';
        probe.setAttribute('style', 'width: 123px');
        document.body.appendChild(probe);
    }""")
    deadline = time.monotonic() + 5
    while not page.csp_violations and time.monotonic() < deadline:
        p.wait_for_timeout(50)
    assert [v["directive"] for v in page.csp_violations] in (["style-src-attr"], ["style-src"])
    assert p.evaluate("getComputedStyle(document.getElementById('csp-probe')).width") != "123px"
    page.close()


def test_cross_origin_writes_are_refused(console_gateway, owner):
    """A management write with a valid token but `Origin: http://evil.example`, or
    `Sec-Fetch-Site: cross-site`/`same-site`, is 403 `cross_origin_request` and changes nothing;
    without those headers, or with the gateway's own origin, the same write works."""
    one = f"{owner.tokens_path()}/{owner.key_id}"
    before = keys(console_gateway, owner)
    refused_headers = [{"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"},
                       {"sec-fetch-site": "same-site"},
                       {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}]
    for headers in refused_headers:
        for method, path, body in [("POST", owner.tokens_path(), {"name": "csrf"}),
                                   ("PATCH", one, {"name": "csrf"}), ("DELETE", one, None)]:
            status, answer_headers, answer = call(console_gateway, method, path, owner.token,
                                                  body, headers)
            assert_management_error(status, answer_headers, answer, 403, "cross_origin_request")
    assert keys(console_gateway, owner) == before, "a refused write changed something"

    made = []
    for headers in [{}, {"origin": console_gateway.base_url},
                    {"origin": console_gateway.base_url, "sec-fetch-site": "same-origin"}]:
        status, _, body = call(console_gateway, "POST", owner.tokens_path(), owner.token,
                               {"name": "same origin"}, headers)
        assert status == 202, (headers, body)
        BROWSER_SECRETS.append(body["token"]["content"])
        made.append(body["token"]["id"])
        path = f"{owner.tokens_path()}/{body['token']['id']}"
        status, _, body = call(console_gateway, "PATCH", path, owner.token,
                               {"name": "same origin 2"}, headers)
        assert status == 202 and body["token"]["name"] == "same origin 2", body
        assert call(console_gateway, "DELETE", path, owner.token, None, headers)[0] == 202
    assert keys(console_gateway, owner) == before


class ElsewherePage(http.server.BaseHTTPRequestHandler):
    """A page of another origin (another loopback port)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b"<!doctype html><html lang=en><title>elsewhere</title><p>elsewhere</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_page_of_another_origin_cannot_create_a_key(console_gateway, browser, owner):
    """From a page served on another loopback port, fetch() with a valid management token is
    blocked by the browser (CORS) or refused by the gateway, and no key is created."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ElsewherePage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = keys(console_gateway, owner)
    try:
        page = browser.page(base_url=f"http://127.0.0.1:{server.server_address[1]}")
        page.page.goto(page.base_url + "/")
        expect(page.page.locator("p")).to_have_text("elsewhere")
        outcome = page.page.evaluate("""async ({url, token}) => {
            const out = {};
            const attempt = async (name, init) => {
                try {
                    const response = await fetch(url, init);
                    out[name] = response.type === 'opaque' ? 'opaque' : response.status;
                } catch (error) {
                    out[name] = 'blocked';
                }
            };
            await attempt('cors', {method: 'POST', body: JSON.stringify({name: 'from elsewhere'}),
                headers: {authorization: 'Bearer ' + token, 'content-type': 'application/json'}});
            await attempt('simple', {method: 'POST', body: JSON.stringify({name: 'elsewhere 2'}),
                headers: {'content-type': 'text/plain'}});
            await attempt('noCors', {method: 'POST', mode: 'no-cors',
                body: JSON.stringify({name: 'elsewhere 3'}),
                headers: {authorization: 'Bearer ' + token, 'content-type': 'text/plain'}});
            return out;
        }""", {"url": console_gateway.base_url + owner.tokens_path(), "token": owner.token})
        page.close()
    finally:
        server.shutdown()
        server.server_close()
    assert outcome["cors"] in ("blocked", 401, 403), outcome
    assert outcome["simple"] in ("blocked", "opaque", 401, 403), outcome
    assert outcome["noCors"] in ("blocked", "opaque"), outcome
    assert keys(console_gateway, owner) == before, "a page of another origin created a key"


def test_no_credential_is_logged_stored_or_put_in_a_url(console_gateway, browser, owner):
    """After a whole console session (and everything the tests above did): while signed in the
    token is only in sessionStorage, sign-out removes it; localStorage and cookies are empty;
    neither the management tokens nor the keys' secrets are in the gateway's log, a browser
    console message or any URL the browser requested, and only API requests carry a token."""
    page = browser.page()
    page.sign_in(owner.token)
    for view in VIEWS:
        page.show(view)
    page.show("keys")
    create_key_in_console(page, "console leak probe", "1d")
    page.page.locator("#secret-done").click()
    stored = page.storage()
    assert stored == {"local": {}, "session": {TOKEN_STORAGE_KEY: owner.token}, "cookie": ""}
    assert page.context.cookies() == []
    page.page.locator("#sign-out").click()
    expect(page.page.locator("#sign-in")).to_be_visible()
    assert page.storage() == {"local": {}, "session": {}, "cookie": ""}
    assert owner.token not in page.page.evaluate("document.body.innerText")
    page.close()

    records = browser.records
    secrets = sorted(set(BROWSER_SECRETS))
    assert len(secrets) >= 10 and len(records.requests) > 50
    api_with_token = 0
    for secret in secrets:
        tail = secret.rsplit("-", 1)[1]
        needles = [secret] + ([tail] if len(tail) >= 16 else [])
        for needle in needles:
            assert needle not in console_gateway.log, "a credential in the gateway's log"
            assert not [m for m in records.console_messages if needle in m], \
                "a credential in a browser console message"
            assert not [e for e in records.page_errors if needle in e]
            assert not [r.url for r in records.requests if needle in r.url], \
                "a credential in a request URL"
    for request in records.requests:
        authorization = request.headers.get("authorization")
        if authorization:
            assert "/v1/" in request.url and "/console" not in request.url, request.url
            api_with_token += 1
        if "/console" in request.url:
            assert not authorization
    assert api_with_token > 20
