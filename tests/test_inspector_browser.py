"""The inspector in a real browser (Playwright driving Debian's Chromium, headless): against
``sandbox-agent inspect`` over SQLite and Postgres (list, search, open, slide, diff, check, fork,
raw events, hostile content) and against a real server running the mock agent (token, follow a
live turn, approve a permission, send a prompt, fork). Screenshots land in ``test-artifacts/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox_agent.testing.server import ServerProcess, create, stream_turn, wait_for

from helpers.inspector import (
    CHROMIUM,
    XSS,
    Inspect,
    inspecting,
    need_chromium,
    screenshot,
    seed,
    store_url,
)

TOKEN = "inspector-token"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.dialogs = []  # type: ignore[attr-defined]
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture(
    scope="module",
    # Postgres in the slow run (CI runs both): the default run stays short.
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])],
)
def inspected(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Inspect]:
    """``inspect --writable`` over a seeded store of each driver."""
    need_chromium()
    tmp = tmp_path_factory.mktemp(f"inspect-{request.param}")
    with store_url(request.param, tmp) as url:
        seed(url, extra_sessions=55)
        with inspecting(url, tmp / "inspect.log", writable=True) as served:
            served.driver = request.param  # type: ignore[attr-defined]
            yield served


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def test_list_search_open_slide_diff_check_and_fork(page: Any, inspected: Inspect) -> None:
    driver = inspected.driver  # type: ignore[attr-defined]
    page.goto(inspected.url + "/")
    page.wait_for_selector("body[data-loaded='50']")  # the first keyset page of 58 sessions
    assert page.locator("tr.session-row").count() == 50
    page.click("#more")
    page.wait_for_selector("body[data-loaded='58']")
    assert page.locator("#more").is_hidden()
    page.fill("#q", "greeting")
    page.click("#filters button")
    page.wait_for_selector("body[data-loaded='1']")
    row = page.locator("tr.session-row")
    assert row.get_attribute("data-id") == "alpha"
    page.fill("#q", "")
    page.fill("#agent", "mock")
    page.click("#filters button")
    page.wait_for_selector("body[data-loaded='3']")
    # Each row's anomaly count arrives after the list has painted.
    page.wait_for_selector("tr[data-id=broken] td[data-count='2'].bad")
    page.wait_for_selector("tr[data-id=alpha] td[data-count='0']")
    screenshot(page, f"list-{driver}")

    page.click("tr.session-row[data-id=alpha] a")
    page.wait_for_selector("body[data-ready=true]")
    transcript = page.locator("#transcript")
    assert "Fixed: the greeting now says hello." in transcript.inner_text()
    assert transcript.locator(".tool-call b", has_text="read_file").count() == 1
    assert transcript.locator(".patch .add").inner_text() == '+print("hello")'
    assert "pytest" in transcript.locator(".kind-question").inner_text()
    assert "rate limited" in transcript.locator(".kind-error").inner_text()
    last = int(page.get_attribute("body", "data-at"))
    screenshot(page, f"session-{driver}")

    # Time travel: the slider moves the whole view back; entries link to their sequence.
    page.locator("#slider").fill("5")
    page.wait_for_selector("body[data-at='5']")
    assert "Fixed:" not in transcript.inner_text()
    assert page.locator("#state dl").get_attribute("data-at") == "5"
    screenshot(page, f"slider-{driver}")
    page.click("#latest")
    page.wait_for_selector(f"body[data-at='{last}']")
    page.locator("#transcript a.seq").first.click()
    page.wait_for_selector("#transcript .entry.focus")

    # A diff between two points.
    page.fill("#diff-a", "3")
    page.fill("#diff-b", "20")
    page.click("#diff-form button")
    page.wait_for_selector("#diff h3")
    assert "From #3 to #20" in page.locator("#diff").inner_text()
    assert "Items added" in page.locator("#diff").inner_text()
    screenshot(page, f"diff-{driver}")

    # Raw events filtered by type.
    page.locator("#type-filters input[value='item.delta']").check()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#event-rows tr td.mono')]"
        ".every(td => td.textContent.startsWith('item.delta'))"
        " && document.querySelectorAll('#event-rows tr').length > 0"
    )

    # Fork at a sequence, then open the fork.
    page.fill("#fork-id", f"alpha-fork-{driver}")
    page.fill("#fork-at", "10")
    page.click("#fork-form button")
    page.click("#fork-link")
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_attribute("body", "data-at") == "10"
    assert "forked from alpha at #10" in page.locator("#header").inner_text()

    # A damaged stream: anomalies marked at their sequence, and the replay check.
    _open(page, inspected.url + "/s/broken")
    marks = page.locator("#marks a.mark")
    assert marks.count() >= 2
    page.click("#check")
    page.wait_for_selector("body[data-checked=true]")
    kinds = page.locator("#anomalies li b").all_inner_texts()
    assert {"delta_before_start", "turn_ended_without_start"} <= {k.strip() for k in kinds}
    assert page.locator("#event-rows tr.anomaly").count() >= 2
    screenshot(page, f"anomalies-{driver}")
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_hostile_content_renders_as_text(page: Any, inspected: Inspect) -> None:
    driver = inspected.driver  # type: ignore[attr-defined]
    page.goto(inspected.url + "/?q=script")
    page.wait_for_selector("tr.session-row[data-id=xss]")
    assert page.evaluate("window.__xss") is None
    page.click("tr.session-row[data-id=xss] a")
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#type-filters input").first.wait_for()
    page.locator("details").evaluate_all("ds => ds.forEach(d => d.open = true)")
    screenshot(page, f"xss-{driver}")
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []  # type: ignore[attr-defined]
    # No markup of the session's made it into the page: no script, handler or javascript: link.
    assert page.locator("main script, main svg, main img, main iframe").count() == 0
    assert page.locator("main a[href^='javascript:' i]").count() == 0
    handlers = page.evaluate(
        "[...document.querySelectorAll('main *')].flatMap(e => [...e.attributes])"
        ".filter(a => a.name.startsWith('on')).length"
    )
    assert handlers == 0
    # And the text is there, as text: in the transcript, the tool output, a file name, the raw
    # events, the title.
    transcript = page.locator("#transcript").inner_text()
    for payload in (XSS[0], XSS[1], XSS[3], XSS[4], XSS[5]):
        assert payload in transcript
    assert "[click me](javascript:window.__xss=1)" in transcript
    assert page.locator(".file-ref .path").inner_text() == XSS[1] + ".py"
    assert XSS[0] in page.locator("#event-rows").inner_text()
    assert XSS[0] in page.locator("#header h1").inner_text()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need_chromium()
    tmp_path = tmp_path_factory.mktemp("server")
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'server.db'}",
        tmp_path / "server.log",
        args=("--token", TOKEN),
        mock_delay_ms=20,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_server_ui_token_follow_permission_prompt_and_fork(
    page: Any, live_server: ServerProcess
) -> None:
    client = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    create(client, "live")
    stream_turn(client, "live", "markdown")

    # The page asks for the token once; it is kept in sessionStorage, never in a URL.
    page.goto(live_server.url + "/ui/")
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    page.wait_for_selector("tr.session-row[data-id=live]")
    screenshot(page, "server-list")
    assert page.evaluate("sessionStorage.getItem('sandbox-agent-token')") == TOKEN
    page.click("tr.session-row[data-id=live] a")
    page.wait_for_selector("body[data-ready=true]")
    assert TOKEN not in page.url
    assert page.locator("#token-form").is_hidden()  # asked once per tab

    # Follow the stream; a prompt sent from the page runs a live turn that asks permissions.
    page.check("#follow")
    page.wait_for_selector("body[data-following=true]")
    page.fill("#prompt", "permission")
    page.click("#prompt-form button[type=submit]")
    once = page.locator(".kind-permission button.act", has_text="once")
    once.first.wait_for()
    screenshot(page, "server-permission")
    assert "curl -X POST" in page.locator(".kind-permission .curl code").first.text_content()
    assert once.count() == 2
    once.first.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.kind-permission button.act').length === 3"
    )
    page.locator(".kind-permission button.act", has_text="reject").click()
    page.wait_for_selector("text=turn 2 ended")
    events = wait_for(client, "live", "turn.ended", after=1)
    resolved = [e["data"]["status"] for e in events if e["type"] == "permission.resolved"]
    assert sorted(resolved) == ["accept", "reject"]
    screenshot(page, "server-live")

    # A followed turn appears without a reload: sent through the API, seen on the page.
    stream_turn(client, "live", "echo seen from elsewhere")
    page.wait_for_selector("#transcript >> text=seen from elsewhere")

    # Fork from the server's UI.
    page.fill("#fork-id", "live-fork")
    page.fill("#fork-at", "4")
    page.click("#fork-form button")
    page.wait_for_selector("#fork-link")
    forked = client.get("/v1/sessions/live-fork/events", params={"offset": 0}).json()["events"]
    source = client.get("/v1/sessions/live/events", params={"offset": 0, "limit": 4}).json()
    # The server's fork route (POST /v1/sessions/{id}/fork): events 1..4 copied, then the fork
    # continues (a turn open at 4 is closed, and session.resumed says how it continues).
    assert [(e["type"], e["data"]) for e in forked[:4]] == [
        (e["type"], e["data"]) for e in source["events"]
    ]
    continued = [e for e in forked[4:] if e["type"] == "session.resumed"]
    assert [e["data"]["reason"] for e in continued] == ["forked"]

    # Cancel a running turn from the page (the mock waits for its permissions).
    page.fill("#prompt", "permission")
    page.click("#prompt-form button[type=submit]")
    page.locator(".kind-permission button.act", has_text="once").first.wait_for()
    page.click("#cancel")
    page.wait_for_selector("#transcript >> text=ended: cancelled")
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_curl_shown_for_each_action_uses_no_token(page: Any, live_server: ServerProcess) -> None:
    client = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    create(client, "q")
    client.post("/v1/sessions/q/messages", json={"message": "question"})
    wait_for(client, "q", "question.requested")
    page.goto(live_server.url + "/ui/s/q")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    page.wait_for_selector("body[data-ready=true]")
    page.locator(".kind-question button.act").first.wait_for()
    for code in page.locator("code").all_text_contents():
        assert TOKEN not in code
        assert re.search(r"curl -X POST .*\$SANDBOX_AGENT_URL/v1/sessions/q/", code), code
    # Answer the first question with its first option, from the page.
    page.locator(".kind-question button.act").first.click()
    page.wait_for_function(
        "() => document.querySelector('.kind-question .answer').textContent.includes('answered')"
    )
