"""The inspector over HTTP, without a browser: ``sandbox-agent inspect`` over a real SQLite file
and the server's ``/ui/`` (pages are data-free shells under a strict CSP, the data is behind
the token, bad input is problem+json, read-only means read-only, keyset pages), and the safety
of what it renders (Markdown, attributes of the live actions)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from sandbox_agent.events import EventDraft
from sandbox_agent.inspector import CSP, Options, build_inspector, render_markdown, views
from sandbox_agent.inspector.app import ANOMALY_CACHE
from sandbox_agent.inspector.views import at_view, newest_entries
from sandbox_agent.replay import build_transcript, replay
from sandbox_agent.store import SessionRecord, open_store
from sandbox_agent.testing.databases import sqlite_url
from sandbox_agent.testing.server import ServerProcess, free_port
from sandbox_agent.testing.streams import canonical_session

from helpers.inspector import XSS, Inspect, in_thread, inspecting, seed, xss_session

TOKEN = "tok-inspector"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inspect") / "store.db"
    seed(sqlite_url(path), extra_sessions=57)  # 60 in all
    return path


@pytest.fixture(scope="module")
def read_only(store_path: Path) -> Iterator[Inspect]:
    with inspecting(sqlite_url(store_path), store_path.with_suffix(".log")) as served:
        yield served


def test_pages_are_data_free_shells_under_a_strict_csp(read_only: Inspect) -> None:
    for path in ("/", "/s/alpha", "/static/inspector.js", "/static/inspector.css"):
        response = httpx.get(read_only.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self';" in CSP and "unsafe" not in CSP
    for path in ("/", "/s/alpha"):
        page = httpx.get(read_only.url + path).text
        assert "Fix the greeting" not in page  # the data comes from /api, with the token
        tags = parse(page)
        assert tags.script_text.strip() == ""  # no inline script
        assert all(attrs.get("src") for tag, attrs in tags.tags if tag == "script")
        for _, attrs in tags.tags:
            assert not [name for name in attrs if name.startswith("on") or name == "style"]


def test_bad_input_is_problem_json(read_only: Inspect) -> None:
    cases = {
        "/api/sessions/alpha/at?seq=x": 400,
        "/api/sessions/alpha/at?seq=-1": 400,
        "/api/sessions/alpha/at?seq=100000": 400,
        "/api/sessions/nope/at": 404,
        "/api/sessions/nope/events": 404,
        "/api/sessions?status=bogus": 400,
        "/api/sessions?cursor=garbage": 400,
        "/api/sessions/alpha/diff?a=1&b=999999": 400,
        "/static/../app.py": 404,
        "/static/secret.txt": 404,
    }
    for path, status in cases.items():
        response = httpx.get(read_only.url + path)
        assert response.status_code == status, (path, response.text)
        if status == 400 or path.startswith("/api"):
            assert response.headers["content-type"] == "application/problem+json"
            body = response.json()
            assert body["status"] == status and body["detail"]


def test_read_only_inspect_refuses_to_fork_and_writes_nothing(
    read_only: Inspect, store_path: Path
) -> None:
    before = store_path.stat().st_mtime_ns
    response = httpx.post(
        read_only.url + "/api/sessions/alpha/fork", json={"sessionId": "copy", "at": 3}
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert httpx.get(read_only.url + "/api/sessions/copy/at").status_code == 404
    assert 'data-writable="false"' in httpx.get(read_only.url + "/s/alpha").text
    assert store_path.stat().st_mtime_ns == before


def test_the_list_pages_by_keyset_and_search_scans_in_bounds(read_only: Inspect) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"cursor": cursor} if cursor else {}
        body = httpx.get(read_only.url + "/api/sessions", params=params).json()
        ids = [attrs["data-id"] for tag, attrs in parse(body["html"]).tags if tag == "tr"]
        assert len(ids) == body["count"] <= 50
        seen.extend(i for i in ids if i)
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 2 and len(seen) == len(set(seen)) == 60
    found = httpx.get(read_only.url + "/api/sessions", params={"q": "GREETING"}).json()
    assert found["count"] == 1 and 'data-id="alpha"' in found["html"]
    ended = httpx.get(read_only.url + "/api/sessions", params={"status": "ended"}).json()
    assert ended["count"] == 1  # alpha ends; the others are still active
    by_agent = httpx.get(read_only.url + "/api/sessions", params={"agent": "mock"}).json()
    assert by_agent["count"] == 3


def test_the_list_counts_each_sessions_anomalies(read_only: Inspect) -> None:
    counts = {
        sid: httpx.get(f"{read_only.url}/api/sessions/{sid}/anomalies").json()["count"]
        for sid in ("alpha", "xss", "broken", "extra-00000")
    }
    assert counts == {"alpha": 0, "xss": 0, "broken": 2, "extra-00000": 0}
    assert httpx.get(read_only.url + "/api/sessions/nope/anomalies").status_code == 404


def test_state_json_and_diff_and_check(read_only: Inspect) -> None:
    state = httpx.get(read_only.url + "/api/sessions/alpha/state.json", params={"seq": 4}).json()
    assert state["last_sequence"] == 4 and state["session_id"] == "alpha"
    diff = httpx.get(read_only.url + "/api/sessions/alpha/diff", params={"a": 0, "b": 4}).json()
    assert "From #0 to #4: 4 events" in diff["html"]
    check = httpx.get(read_only.url + "/api/sessions/broken/check").json()
    kinds = {a["kind"] for a in check["anomalies"]}
    assert {"delta_before_start", "turn_ended_without_start"} <= kinds


def test_fork_checks_its_input(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "w.db")
    seed(url)
    with inspecting(url, tmp_path / "log", writable=True) as served:
        fork = served.url + "/api/sessions/alpha/fork"
        for body, status in (
            ({"sessionId": "a b"}, 400),
            ({"sessionId": "ok", "at": -1}, 400),
            ({"sessionId": "ok", "at": True}, 400),
            ({"sessionId": "xss"}, 409),
            ({"sessionId": "alpha-3", "at": 3}, 201),
        ):
            response = httpx.post(fork, json=body)
            assert response.status_code == status, (body, response.text)
        assert httpx.post(fork, content=b"not json").status_code == 400
        assert (
            httpx.post(served.url + "/api/sessions/nope/fork", json={"sessionId": "n"}).status_code
            == 404
        )
        at = httpx.get(served.url + "/api/sessions/alpha-3/at").json()
        assert at["lastSequence"] == 3


def test_inspect_refuses_to_serve_off_loopback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_agent", "inspect", "--store", "memory://", "-H", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "loopback only" in done.stderr


def test_inspect_opens_any_store_and_never_creates_one(tmp_path: Path) -> None:
    with inspecting("memory://", tmp_path / "m.log") as served:
        assert httpx.get(served.url + "/api/sessions").json()["count"] == 0
    missing = tmp_path / "typo.db"
    with pytest.raises(RuntimeError, match="inspect exited"):
        Inspect(sqlite_url(missing), tmp_path / "t.log").start()
    assert not missing.exists()


def test_the_server_serves_the_ui_pages_publicly_and_its_data_behind_the_token(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        sqlite_url(tmp_path / "s.db"), tmp_path / "s.log", args=("--token", TOKEN)
    ).start()
    try:
        for path in ("/ui", "/ui/", "/ui/s/anything", "/ui/static/inspector.js"):
            response = httpx.get(server.url + path)
            assert response.status_code == 200, path
            assert response.headers["content-security-policy"] == CSP
        page = httpx.get(server.url + "/ui/").text
        assert 'data-live="true"' in page and 'data-base="/ui"' in page
        for path in ("/ui/api/sessions", "/ui/api/sessions/x/at"):
            assert httpx.get(server.url + path).status_code == 401
        assert httpx.post(server.url + "/ui/s/x", json={}).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(server.url + "/ui/api/sessions", headers=auth).status_code == 200
    finally:
        server.stop()


# -- what is rendered ------------------------------------------------------------------------
def test_markdown_escapes_html_and_keeps_only_http_links() -> None:
    html = render_markdown(
        "<script>alert(1)</script> [a](javascript:alert(1)) [b](data:text/html,x) "
        "[c](https://example.com/x) ![i](https://example.com/i.png) <b onclick=x>b</b>"
    )
    tags = parse(html)
    assert [tag for tag, _ in tags.tags] == ["p", "a", "a"]
    assert [attrs["href"] for tag, attrs in tags.tags if tag == "a"] == [
        "https://example.com/x",
        "https://example.com/i.png",  # an image becomes a link: the page loads nothing
    ]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[a](javascript:alert(1))" in html


async def test_live_actions_keep_hostile_ids_and_options_inside_their_attributes() -> None:
    stream = xss_session("x")
    quote = '" onmouseover="alert(1)'
    stream.turn("t2")
    stream.question_ask(f"q{quote}", "pick", [quote, XSS[0]])
    stream.permission_request(f"p{quote}", "run")
    async with await open_store("memory://") as store:
        await store.create_session(SessionRecord(id="x", agent="mock"))
        await store.append("x", [EventDraft.from_event(e) for e in stream.events])
        inspector = build_inspector(store, Options(live=True))
        view = await at_view(store, "x", None)
        html = inspector._fragment("transcript.html", view=view)
    tags = parse(html)
    for _, attrs in tags.tags:
        assert not [name for name in attrs if name.startswith("on")], attrs
    buttons = [attrs for tag, attrs in tags.tags if tag == "button"]
    bodies = [json.loads(b["data-body"]) for b in buttons if b.get("data-body")]
    assert {"answers": [[quote]]} in bodies and {"answers": [[XSS[0]]]} in bodies
    paths = {b["data-path"] for b in buttons}
    assert "/v1/sessions/x/questions/q%22%20onmouseover%3D%22alert%281%29/reply" in paths
    assert tags.script_text == ""


@pytest.mark.slow
def test_the_list_pages_through_ten_thousand_sessions(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "big.db")

    async def make() -> None:
        async with await open_store(url) as store:
            for n in range(10_000):
                await store.create_session(SessionRecord(id=f"s{n:05d}", agent="mock"))

    in_thread(make)
    with inspecting(url, tmp_path / "log") as served, httpx.Client(base_url=served.url) as client:
        seen: set[str] = set()
        cursor = None
        while True:
            body = client.get("/api/sessions", params={"cursor": cursor} if cursor else {}).json()
            ids = [a["data-id"] for t, a in parse(body["html"]).tags if t == "tr"]
            assert len(ids) <= 50 and not seen & {i for i in ids if i}
            seen.update(i for i in ids if i)
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert len(seen) == 10_000
        # A search reads a bounded number of sessions per request and says where to go on.
        body = client.get("/api/sessions", params={"q": "s0001"}).json()
        assert body["count"] == 0 and body["nextCursor"]
        found = []
        while body["nextCursor"]:
            body = client.get(
                "/api/sessions", params={"q": "s0001", "cursor": body["nextCursor"]}
            ).json()
            found += [a["data-id"] for t, a in parse(body["html"]).tags if t == "tr"]
        assert sorted(found) == [f"s0001{n}" for n in range(10)]


@pytest.mark.parametrize("limit", [1, 2, 5, 12, 30, 1000])
def test_the_newest_entries_are_the_tail_of_the_whole_transcript(limit: int) -> None:
    stream = canonical_session("c")
    for n in range(3):  # more turns, so that the cut falls inside the turn numbering
        stream.turn(f"x{n}").user(f"xu{n}", f"again {n}")
        stream.assistant(f"xa{n}", "ok")
        stream.turn_end(f"x{n}")
    state = replay(stream.events)
    whole = build_transcript(state, private_reasoning=True).entries
    window, omitted = newest_entries(state, limit)
    assert omitted == max(0, len(whole) - limit)
    assert window.entries == whole[omitted:]


def test_the_docs_inspect_command_works_as_written(tmp_path: Path) -> None:
    """docs/inspector.md's command, run in a directory holding ``sessions.db`` (only the port
    changed); and its limits table says what the code does."""
    doc = (Path(__file__).parents[1] / "docs" / "inspector.md").read_text()
    command = re.search(r"```sh\n(sandbox-agent inspect [^\n]+)\n```", doc)
    assert command, "the inspect command in docs/inspector.md"
    args = command.group(1).split()[1:]
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    seed(sqlite_url(tmp_path / "sessions.db"))
    proc = subprocess.Popen([sys.executable, "-m", "sandbox_agent", *args], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/api/sessions").json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert body["count"] == 3
    finally:
        proc.terminate()
        proc.wait(10)
    for text, value in (
        ("sessions on a page of the list | 50", views.PAGE_SIZE),
        ("sessions one search request reads | 2,000", views.SEARCH_SCAN),
        ("transcript entries shown at a sequence | the newest 100", views.TRANSCRIPT_ENTRIES),
        ("items in the state panel | the newest 30", views.STATE_ITEMS),
        ("read to fill a filtered page | 100 / 5,000", views.EVENTS_PAGE),
        ("one event's data in the raw table | 4,000", views.EVENT_CHARS),
        ("anomaly counts kept for the list | 10,000", ANOMALY_CACHE),
    ):
        assert text in doc and f"{value:,}" in text, text
    assert views.EVENTS_SCAN == 5000


@pytest.mark.slow
def test_the_wheel_ships_the_templates_and_assets(tmp_path: Path) -> None:
    """The page's files are package data: a wheel built from the checkout holds every one."""
    import zipfile

    root = Path(__file__).parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sandbox_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = root / "src" / "sandbox_agent" / "inspector"
    for folder in ("templates", "static"):
        for path in (package / folder).iterdir():
            assert f"sandbox_agent/inspector/{folder}/{path.name}" in names


def test_inspect_follows_a_session_as_another_process_writes_it(tmp_path: Path) -> None:
    """``/api/sessions/{id}/follow`` streams the events stored after ``after``, then new ones
    as a writer elsewhere appends them (here: this test, through its own store)."""
    url = sqlite_url(tmp_path / "f.db")
    seed(url)
    stream = canonical_session("alpha")
    last = len(stream.events)
    more = [EventDraft(type="error", data={"message": f"late {n}"}) for n in range(3)]

    async def append() -> None:
        async with await open_store(url) as store:
            await store.append("alpha", more, expected_sequence=last)

    with inspecting(url, tmp_path / "log") as served, httpx.Client(timeout=10) as client:
        follow = f"{served.url}/api/sessions/alpha/follow"
        with client.stream("GET", follow, params={"after": last - 2}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            seen: list[int] = []
            for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:])["sequence"])
                    if len(seen) == 2:
                        break
            assert seen == [last - 1, last]
            in_thread(append)
            for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:])["sequence"])
                    if len(seen) == 5:
                        break
            assert seen == [last - 1, last, last + 1, last + 2, last + 3]
        assert client.get(f"{served.url}/api/sessions/nope/follow").status_code == 404
