"""The dashboard in a real Chromium (Debian's package, driven by Playwright) against both sides
live: an operator logs in, sees the fleet (an unchanged table's poll answered 304 and left in
place), opens the site, dispatches from the form and watches the command become applied and the
battery follow; a viewer finds no dispatch form, and refusals (403, 404, 405) in the
dashboard's layout or, for htmx, in its notice area.

Screenshots of the fleet and site pages (at 1280 px and at phone width) go to var/screenshots/
for a reviewer. A browser that cannot start fails the test; it never skips."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from amperio.procs import REPO_DIR, Proc, wait_until
from demo.enexa import DEMO_PASSWORDS
from tests.integration.system import FAST, SITE, System, set_site_config

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = REPO_DIR / "var" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
VIEWER_PASSWORD = "viewer-sees-only-" + DEMO_PASSWORDS["ENEXA_DEMO_OPERATOR_PASSWORD"][-8:]
WAIT_MS = 60_000


@pytest.fixture
def browser():
    """Chromium from Debian's package; a missing or broken one fails here, loudly."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def live(tmp_path):
    """Enexa (with beat, which pulls command outcomes from Amperio), the simulator, and a
    provisioned gateway; a viewer of the site. (The simulator runs in real time: a faster clock
    would also run out its watchdog and put the battery in its safe state.)"""
    system = System(tmp_path)
    system.before_provisioning = lambda: set_site_config(system, FAST)
    beat = None
    with system:
        assert system.enexa is not None
        beat = Proc(
            "enexa-beat",
            [sys.executable, "-m", "celery", "-A", "enexa.celery", "beat", "-l", "INFO"],
            system.log_dir,
            system.enexa.env,
        )
        try:
            system.run_manage(
                "shell",
                "-c",
                "from django.contrib.auth import get_user_model; "
                "from enexa.registry.models import Site, SiteMembership; "
                "u = get_user_model().objects.create_user("
                f"'viewer', password='{VIEWER_PASSWORD}'); "
                "SiteMembership.objects.create(user=u, site=Site.objects.get(code='SITE001'), "
                "role='viewer')",
            )
            wait_until(system.latest_reading, 60, 0.5, what="the first reading in Enexa")
            yield system
        finally:
            beat.stop()


def log_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/app/")
    assert "/app/login/" in page.url  # the dashboard asks who you are first
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/app/")


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def soc_shown(page) -> float:
    return float(page.get_attribute("#soc-value", "data-soc") or "nan")


def test_an_operator_watches_the_site_and_dispatches_from_the_form(live, browser, figures):
    assert live.enexa is not None
    url = live.enexa.url
    page = browser.new_page(viewport=DESKTOP)
    page.set_default_timeout(WAIT_MS)
    log_in(page, url, "operator", DEMO_PASSWORDS["ENEXA_DEMO_OPERATOR_PASSWORD"])

    row = page.locator(f'tr[data-site="{SITE}"]')
    row.locator('[data-status="online"]').wait_for()  # the fleet poll shows it online
    assert page.locator("tr[data-site]").count() == 1  # the operator's one site
    assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).display") == "flex"
    shoot(page, "fleet-1280")

    # A table that does not change (a filter no site matches while SITE001 is online): its poll
    # sends the table's ETag back, Enexa answers 304 without a body and htmx leaves the table
    # in place (the same element, not swapped); its "updated" time still moves on.
    page.goto(f"{url}/app/?status=offline")
    page.evaluate("document.getElementById('fleet').kept = true")
    updated = page.inner_text("#fleet .updated time")
    with page.expect_response(
        lambda r: "status=offline" in r.url and r.request.headers.get("hx-request") == "true"
    ) as poll:
        pass
    assert poll.value.status == 304
    assert poll.value.request.headers.get("if-none-match", "").startswith('"')
    page.wait_for_function(
        f"document.querySelector('#fleet .updated time').textContent !== {updated!r}"
    )
    assert page.evaluate("document.getElementById('fleet').kept") is True
    assert "No site to show for this filter" in page.inner_text("#fleet")
    page.goto(f"{url}/app/")

    row.locator(f'a[href="/app/sites/{SITE}/"]').click()
    page.wait_for_url(f"{url}/app/sites/{SITE}/")
    page.locator("#soc-value[data-soc]").wait_for()
    page.wait_for_function("Number(document.querySelector('#charts').dataset.points) > 0")
    page.evaluate("window.__notReloaded = true")  # gone if anything reloads the whole page

    charger_choices = page.eval_on_selector_all(
        "#id_charger_id option", "options => options.map(o => o.value)"
    )
    assert charger_choices == ["", "CHG1"]  # the site's chargers, as configured
    page.select_option("#id_command", "set_battery_power")
    page.fill("#id_power_kw", "-100")
    page.click("#dispatch-form button[type=submit]")  # not confirmed: the browser refuses
    assert page.evaluate("document.querySelector('#id_confirm').validity.valueMissing")
    assert page.locator("tr[data-command-id]").count() == 0
    page.check("#id_confirm")
    page.click("#dispatch-form button[type=submit]")
    page.locator("#dispatch-form .sent").wait_for()

    command_row = page.locator("tr[data-command-id]").first
    command_row.locator('[data-status="applied"]').wait_for(timeout=WAIT_MS)
    assert "power_kw=-100" in command_row.inner_text()
    page.wait_for_function(
        "Math.abs(Number(document.querySelector('#battery-power [data-kw]')"
        "?.dataset.kw) + 100) < 2",
        timeout=WAIT_MS,
    )  # the battery follows: the live panel shows it charging at 100 kW
    assert re.search(r"charging (99|100)\.\d kW", page.inner_text("#battery-power"))
    first_soc = soc_shown(page)
    page.wait_for_function(
        f"Number(document.querySelector('#soc-value').dataset.soc) > {first_soc}",
        timeout=WAIT_MS,
    )  # charging at 100 kW (0.1 % in about 10 s), the SOC on screen rises with the polls
    assert page.evaluate("window.__notReloaded") is True
    figures["soc_pct"] = [first_soc, soc_shown(page)]
    shoot(page, "site-1280")

    page.set_viewport_size(PHONE)
    page.reload()
    page.locator("#soc-value").wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"the site page scrolls sideways at phone width ({width})"
    shoot(page, "site-phone")
    page.goto(f"{url}/app/")
    page.locator(f'tr[data-site="{SITE}"]').wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    shoot(page, "fleet-phone")


def test_a_viewer_sees_the_site_but_finds_no_dispatch_form(live, browser):
    assert live.enexa is not None
    url = live.enexa.url
    page = browser.new_page(viewport=DESKTOP)
    page.set_default_timeout(WAIT_MS)
    log_in(page, url, "viewer", VIEWER_PASSWORD)
    page.click(f'a[href="/app/sites/{SITE}/"]')
    page.locator("#soc-value").wait_for()
    assert page.locator("#read-only-note").is_visible()
    assert page.locator("#dispatch-form").count() == 0
    assert page.locator("#id_power_kw").count() == 0

    # htmx requests refused (403), of another site (404) or with a wrong method (405): their
    # fragment shows in the page's notice area, the page stays as it is.
    page.evaluate(
        "htmx.ajax('POST', '/app/sites/SITE001/commands', "
        "{source: '#read-only-note', target: '#read-only-note', values: {command: 'set_mode'}})"
    )
    page.locator('#notice [data-error="403"]').wait_for()
    assert "Only staff and the site's operators" in page.inner_text("#notice")
    page.evaluate(
        "htmx.ajax('GET', '/app/sites/SITE999/live', "
        "{source: '#read-only-note', target: '#read-only-note'})"
    )
    page.locator('#notice [data-error="404"]').wait_for()
    page.evaluate(
        "htmx.ajax('DELETE', '/app/sites/SITE001/live', "
        "{source: '#read-only-note', target: '#read-only-note'})"
    )  # a wrong method (the live panel is only read): the 405 names the one it takes
    page.locator('#notice [data-error="405"]').wait_for()
    assert "This page accepts only GET." in page.inner_text("#notice")
    assert page.locator("#read-only-note").is_visible() and page.locator("#soc-value").count()

    # A page that does not exist: the dashboard's own, with the way back to the fleet.
    missing = page.goto(f"{url}/app/nowhere/")
    assert missing is not None and missing.status == 404
    assert page.inner_text("#error-page h1").startswith("Not found")
    assert page.locator(".topbar").is_visible()
    shoot(page, "not-found-1280")
    page.click("#error-page a.button")
    page.wait_for_url(f"{url}/app/")

    # A form posted to a page that only shows (the header's form, with its CSRF token, pointed
    # at the fleet): the dashboard's 405 page, naming the method the page takes.
    with page.expect_navigation() as posted:
        page.evaluate(
            "() => { const form = document.querySelector('.topbar form'); "
            "form.action = '/app/'; form.submit(); }"
        )
    assert posted.value is not None and posted.value.status == 405
    assert posted.value.headers["allow"] == "GET"
    assert page.inner_text("#error-page h1").startswith("Method not allowed")
    assert "This page accepts only GET." in page.inner_text("#error-page")
    assert page.locator(".topbar").is_visible()
    shoot(page, "not-allowed-1280")
