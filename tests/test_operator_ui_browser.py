"""End to end in a real browser: Debian's chromium + chromedriver, driven by Selenium, against
pytest-django's live server. Log in, pick a timezone, filter and search the call list, open a call,
read its transcript, retry a failed GHL sync task.

Skipped when chromium or chromedriver is not installed, unless REQUIRE_BROWSER=1 (set by .ci/run),
which turns a missing browser into a failure. With UI_SCREENSHOTS=<directory> the pages are saved
there as PNG files (that is how docs/call-page.png is made).
"""

import os
import shutil
from pathlib import Path

import pytest
import responses
from django.utils import timezone

from calls.models import Call, GhlSyncTask, ToolInvocation
from tests.ghl_fake import FakeGhl
from tests.test_operator_ui import make_call
from tests.test_post_call_sync import CALL_ID, DANA, deliver

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
]


def missing_browser():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
def browser(tmp_path):
    reason = missing_browser()
    if reason:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def ghl():
    # `responses` patches requests for the whole process: the live server's thread talks to this fake.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeGhl(rsps)


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("operator", password="pw-operator-1", is_staff=True)


@pytest.fixture
def call_log(client, ghl, agent):
    """Dana's analysed call whose GHL note failed (404 once), with its tool calls; and another call."""
    ghl.fail("POST", r"/notes$", 404, body={"message": "Contact not found"})
    deliver(client, "retell_call_started", "retell_call_ended", "retell_call_analyzed")
    assert GhlSyncTask.objects.get(kind="note").status == "failed"
    for name, arguments, result, latency in [
        ("check_availability", {"date": "2026-12-08", "time_of_day": "afternoon"}, {"slots": 2}, 184.0),
        ("book_appointment", {"start_time": "2026-12-08T14:00:00-08:00", "service": "cleaning"}, None, 642.5),
    ]:
        ToolInvocation.objects.create(
            call_id=CALL_ID,
            tool_name=name,
            source="custom_function",
            arguments=arguments,
            result=result or {"booked": True, "appointment_id": "a_7Hk2mQ"},
            status="succeeded",
            success=True,
            latency_ms=latency,
            finished_at=timezone.now(),
        )
    make_call(1, direction="outbound", to_number="+14155550142", user_sentiment="Neutral")
    return Call.objects.get(call_id=CALL_ID)


def wait_for(driver, condition, timeout=15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def listed_call_ids(driver):
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, "table.calls a.row-link")
    return [link.get_attribute("href").rstrip("/").rsplit("/", 1)[-1] for link in links]


@pytest.mark.django_db(transaction=True)
def test_operator_logs_in_filters_opens_a_call_and_retries_a_failed_sync(
    browser, live_server, settings, monkeypatch, call_log, operator, ghl
):
    from django_q.conf import Conf
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # the live server speaks http
    monkeypatch.setattr(Conf, "SYNC", True)  # the queue runs the retried task inline, in the server

    # Anonymous: the call list sends us to the login page, which sends us back.
    browser.get(f"{live_server.url}/calls/")
    wait_for(browser, ec.presence_of_element_located((By.ID, "id_username")))
    assert "/admin/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys("operator")
    browser.find_element(By.ID, "id_password").send_keys("pw-operator-1")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(browser, ec.url_to_be(f"{live_server.url}/calls/"))
    assert listed_call_ids(browser) == ["call_0001", CALL_ID]  # newest first

    # Operator timezone: picked in the header, remembered in a cookie.
    Select(browser.find_element(By.ID, "tz-picker")).select_by_visible_text("America/Los_Angeles")
    # (Python's cookie writer quotes values holding a "/"; Django reads them back unquoted.)
    wait_for(
        browser, lambda d: (d.get_cookie("tz") or {}).get("value", "").strip('"') == "America/Los_Angeles"
    )
    wait_for(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "table.calls"), "Dec 3, 2026 08:00"))

    # Filter: inbound only.
    Select(browser.find_element(By.ID, "id_direction")).select_by_visible_text("Inbound")
    browser.find_element(By.CSS_SELECTOR, ".filter-row button[type=submit]").click()
    wait_for(browser, ec.url_contains("direction=inbound"))
    assert listed_call_ids(browser) == [CALL_ID]

    # Search: words said in the call, on top of the filter.
    search = browser.find_element(By.ID, "id_q")
    search.clear()
    search.send_keys("cleaning")
    browser.find_element(By.CSS_SELECTOR, ".search-row button[type=submit]").click()
    wait_for(browser, ec.url_contains("q=cleaning"))
    assert listed_call_ids(browser) == [CALL_ID]
    screenshot(browser, "call-list.png")

    # Open the call: its transcript as a conversation, tool calls inline.
    browser.find_element(By.CSS_SELECTOR, "table.calls a.row-link").click()
    wait_for(browser, ec.url_to_be(f"{live_server.url}/calls/{CALL_ID}/"))
    turns = browser.find_elements(By.CSS_SELECTOR, ".conversation .turn")
    assert [t.find_element(By.CSS_SELECTOR, ".who").text.split()[0] for t in turns[:2]] == ["AGENT", "CALLER"]
    assert "Hi Ava, it's Dana Lee." in turns[1].text
    assert len(browser.find_elements(By.CSS_SELECTOR, ".conversation .turn.agent")) == 5
    assert len(browser.find_elements(By.CSS_SELECTOR, ".conversation .turn.user")) == 4
    tool_calls = browser.find_elements(By.CSS_SELECTOR, ".conversation .tool-call")
    assert [t.find_element(By.CSS_SELECTOR, "strong").text for t in tool_calls] == [
        "check_availability",
        "book_appointment",
    ]
    tool_calls[1].find_element(By.TAG_NAME, "summary").click()  # expand: arguments and result
    wait_for(browser, lambda d: "a_7Hk2mQ" in tool_calls[1].text)
    assert (
        "Dana Lee called to book a teeth cleaning."
        in browser.find_element(By.ID, "analysis").find_element(By.XPATH, "..").text
    )

    task = GhlSyncTask.objects.get(kind="note")
    row = browser.find_element(By.ID, f"task-{task.pk}")
    assert "failed" in row.text and "Contact not found" in row.text
    screenshot(browser, "call-page.png")

    # Retry: POST with CSRF; the queue runs the task; GHL now takes the note.
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "queued for retry"))
    assert browser.current_url.endswith(f"/calls/{CALL_ID}/#sync")
    status = browser.find_element(By.ID, f"task-{task.pk}").find_element(By.CSS_SELECTOR, ".task-status")
    assert status.text == "done"
    assert browser.find_element(By.ID, "call-sync-state").text == "GHL: synced"
    assert len(ghl.notes_for(DANA)) == 1
    assert GhlSyncTask.objects.get(pk=task.pk).status == "done"

    # The dashboard links failed work; nothing is failed any more.
    browser.find_element(By.LINK_TEXT, "Dashboard").click()
    wait_for(browser, ec.text_to_be_present_in_element((By.ID, "attention"), "GHL sync"))
    assert "Nothing failed" in browser.find_element(By.ID, "attention").find_element(By.XPATH, "..").text
    screenshot(browser, "dashboard.png")


def screenshot(driver, name):
    """Save the whole page as <UI_SCREENSHOTS>/<name> when that variable is set."""
    directory = os.environ.get("UI_SCREENSHOTS")
    if not directory:
        return
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height + 140, 4000))  # the window frame takes part of it
    Path(directory).mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(Path(directory) / name))
    driver.set_window_size(1280, 900)
