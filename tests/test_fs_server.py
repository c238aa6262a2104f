"""The filesystem API through a real server process (``--root`` a sentinel's root): upstream's
round trip over HTTP, the SDK (async and sync) and the CLI; changes recorded in a session's
stream; the problems; the limits; and the attack suite again, over HTTP, with fewer examples.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent.sdk import SandboxAgent, SandboxAgentError, SandboxAgentSync
from sandbox_agent.testing.server import ServerProcess

from helpers.fs_sentinel import SECRET, fill, make_sentinel, paths, snapshot

#: The server's limits here, small enough to cross in a test.
MAX_FILE_BYTES = 3 * 1024 * 1024
MAX_TAR_ENTRIES = 50
MAX_BODY_BYTES = 1000


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fs-server")
    make_sentinel(base)
    return base


@pytest.fixture(scope="module")
def server(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = [
        "--no-token",
        "--root",
        str(base / "root"),
        "--fs-max-file-bytes",
        str(MAX_FILE_BYTES),
        "--fs-max-tar-entries",
        str(MAX_TAR_ENTRIES),
        "--max-body-bytes",
        str(MAX_BODY_BYTES),
    ]
    # The store and the log away from the sentinel (they change all the time).
    own = tmp_path_factory.mktemp("fs-server-store")
    process = ServerProcess(f"sqlite:///{own}/store.db", own / "server.log", args=args)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _tar(entries: dict[str, bytes], compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _problem(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:sandbox-agent:error:{name}"
    assert {"title", "status", "detail"} <= body.keys()
    return body


# -- round trips -----------------------------------------------------------------------------
def test_the_upstream_round_trip_over_http(http: httpx.Client, base: Path) -> None:
    root = base / "root"
    written = http.put("/v1/fs/file", params={"path": "rt/hello.txt"}, content=b"hello fs")
    assert written.json() == {"path": str(root / "rt" / "hello.txt"), "bytesWritten": 8}
    stat = http.get("/v1/fs/stat", params={"path": "rt/hello.txt"}).json()
    assert (stat["entryType"], stat["size"]) == ("file", 8)
    entries = http.get("/v1/fs/entries", params={"path": "rt"}).json()
    assert [e["name"] for e in entries] == ["hello.txt"]
    read = http.get("/v1/fs/file", params={"path": str(root / "rt" / "hello.txt")})
    assert (read.content, read.headers["content-type"]) == (b"hello fs", "application/octet-stream")
    moved = http.post("/v1/fs/move", json={"from": "rt/hello.txt", "to": "rt/moved/h.txt"})
    assert moved.json() == {"from": str(root / "rt/hello.txt"), "to": str(root / "rt/moved/h.txt")}
    assert http.post("/v1/fs/mkdir", params={"path": "rt/a/b"}).json() == {
        "path": str(root / "rt" / "a" / "b")
    }
    deleted = http.delete("/v1/fs/entry", params={"path": "rt", "recursive": "true"})
    assert deleted.json() == {"path": str(root / "rt")}
    assert not (root / "rt").exists()


@pytest.mark.parametrize("compress", [False, True])
def test_an_upload_unpacks_plain_and_gzip_tar(
    http: httpx.Client, base: Path, compress: bool
) -> None:
    content_type = "application/gzip" if compress else "application/x-tar"
    answer = http.post(
        "/v1/fs/upload-batch",
        params={"path": f"up{compress}"},
        content=_tar({"a/b.txt": b"b", "c.txt": b"cc"}, compress),
        headers={"content-type": content_type},
    )
    target = base / "root" / f"up{compress}"
    assert answer.json() == {
        "paths": [str(target / "a" / "b.txt"), str(target / "c.txt")],
        "truncated": False,
    }
    assert (target / "c.txt").read_bytes() == b"cc"
    shutil.rmtree(target)


def test_the_round_trip_through_the_async_and_sync_sdk(server: ServerProcess, base: Path) -> None:
    root = base / "root"

    async def run() -> None:
        async with await SandboxAgent.connect(server.url) as sdk:
            assert (await sdk.fs.write("sdk/a.txt", b"async")).bytes_written == 5
            assert (await sdk.fs.stat("sdk/a.txt")).size == 5
            assert [e.name for e in await sdk.fs.entries("sdk")] == ["a.txt"]
            assert await sdk.fs.read("sdk/a.txt") == b"async"

            async def chunks() -> Any:
                for _ in range(3):
                    yield b"x" * 1000

            assert (await sdk.fs.write("sdk/chunks", chunks())).bytes_written == 3000
            # A plain iterable of chunks too (docs/sdk.md: "an (async) iterable of chunks").
            plain = (b"y" * 500 for _ in range(4))
            assert (await sdk.fs.write("sdk/plain", plain)).bytes_written == 2000
            assert await sdk.fs.read("sdk/plain") == b"y" * 2000
            moved = await sdk.fs.move("sdk/a.txt", "sdk/b.txt")
            assert moved.to == str(root / "sdk" / "b.txt")
            upload = await sdk.fs.upload(_tar({"t.txt": b"t"}, compress=True), "sdk/up")
            assert upload.paths == [str(root / "sdk" / "up" / "t.txt")]
            with pytest.raises(SandboxAgentError) as refused:
                await sdk.fs.read("../secret.txt")
            assert (refused.value.status, refused.value.problem["type"]) == (
                400,
                "urn:sandbox-agent:error:path_outside_root",
            )
            await sdk.fs.delete("sdk", recursive=True)

    asyncio.run(run())
    assert not (root / "sdk").exists()
    source = base / "local.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024 + 7))
    with SandboxAgentSync.connect(server.url) as sdk:
        assert sdk.fs.write("sync/big.bin", source).bytes_written == source.stat().st_size
        assert sdk.fs.read("sync/big.bin") == source.read_bytes()
        assert sdk.fs.read_to("sync/big.bin", base / "back.bin") == source.stat().st_size
        assert (base / "back.bin").read_bytes() == source.read_bytes()
        assert sdk.fs.mkdir("sync/d").path == str(root / "sync" / "d")
        assert sdk.fs.delete("sync", recursive=True).path == str(root / "sync")


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "sandbox_agent", "api", "fs", *args, "-e", server.url]
    return subprocess.run(command, capture_output=True, timeout=60, check=False)


def test_the_cli_writes_and_refuses_a_path_outside(server: ServerProcess, base: Path) -> None:
    written = _cli(server, "write", "cli1/a.txt", "--content", "from the cli")
    assert json.loads(written.stdout) == {
        "path": str(base / "root" / "cli1" / "a.txt"),
        "bytesWritten": 12,
    }
    refused = _cli(server, "read", "link_out/secret.txt")
    assert refused.returncode == 1
    assert b"path_outside_root" in refused.stderr and SECRET not in refused.stdout
    shutil.rmtree(base / "root" / "cli1")


@pytest.mark.slow  # eight CLI processes
def test_the_round_trip_through_the_cli(server: ServerProcess, base: Path) -> None:
    root = base / "root"
    written = _cli(server, "write", "cli/a.txt", "--content", "from the cli")
    assert json.loads(written.stdout) == {"path": str(root / "cli" / "a.txt"), "bytesWritten": 12}
    assert json.loads(_cli(server, "stat", "cli/a.txt").stdout)["size"] == 12
    listed = json.loads(_cli(server, "entries", "--path", "cli").stdout)
    assert [e["name"] for e in listed] == ["a.txt"]
    assert _cli(server, "read", "cli/a.txt").stdout == b"from the cli"
    assert _cli(server, "move", "cli/a.txt", "cli/b.txt").returncode == 0
    archive = base / "cli.tar.gz"
    archive.write_bytes(_tar({"u.txt": b"u"}, compress=True))
    uploaded = json.loads(_cli(server, "upload", "--tar", str(archive), "--path", "cli").stdout)
    assert uploaded["paths"] == [str(root / "cli" / "u.txt")]
    refused = _cli(server, "read", str(base / "outside" / "secret.txt"))
    assert refused.returncode == 1
    assert b"path_outside_root" in refused.stderr and SECRET not in refused.stdout
    assert _cli(server, "delete", "cli", "--recursive").returncode == 0
    assert not (root / "cli").exists()


# -- the session's stream -------------------------------------------------------------------
def test_each_change_with_a_session_id_is_recorded_in_its_stream(
    http: httpx.Client, base: Path
) -> None:
    (base / "root" / "work").mkdir()
    created = http.post("/v1/sessions/fs-rec", json={"agent": "mock", "directory": "work"})
    assert created.status_code == 200, created.text
    work = base / "root" / "work"
    session = {"session_id": "fs-rec"}
    http.put("/v1/fs/file", params={**session, "path": "f.txt"}, content=b"data")
    assert (work / "f.txt").read_bytes() == b"data"  # relative to the session's directory
    assert http.get("/v1/fs/file", params={**session, "path": "f.txt"}).content == b"data"
    http.post("/v1/fs/mkdir", params={"sessionId": "fs-rec", "path": "d"})
    http.post("/v1/fs/move", params=session, json={"from": "f.txt", "to": "d/g.txt"})
    archive = _tar({"t.txt": b"t"})
    http.post(
        "/v1/fs/upload-batch",
        params={**session, "path": "d"},
        content=archive,
        headers={"content-type": "application/x-tar"},
    )
    http.delete("/v1/fs/entry", params={**session, "path": "d", "recursive": "true"})
    events = http.get("/v1/sessions/fs-rec/events").json()["events"]
    changes = [e["data"] for e in events if e["type"] == "fs.changed"]
    assert [(c["operation"], c["path"]) for c in changes] == [
        ("write", str(work / "f.txt")),
        ("mkdir", str(work / "d")),
        ("move", str(work / "d" / "g.txt")),
        ("upload", str(work / "d")),
        ("delete", str(work / "d")),
    ]
    assert (changes[0]["size"], changes[0]["sha256"]) == (4, hashlib.sha256(b"data").hexdigest())
    assert changes[2]["from_path"] == str(work / "f.txt")
    assert (changes[3]["entries"], changes[3]["sha256"]) == (
        1,
        hashlib.sha256(archive).hexdigest(),
    )
    state = http.get("/v1/sessions/fs-rec/state").json()
    assert state["counts"]["fs.changed"] == 5
    http.post("/v1/sessions/fs-rec/terminate")
    ended = http.put("/v1/fs/file", params={**session, "path": "late.txt"}, content=b"x")
    _problem(ended, 400, "invalid_request")
    assert not (work / "late.txt").exists()
    unknown = http.get("/v1/fs/entries", params={"session_id": "nope"})
    _problem(unknown, 404, "session_not_found")


# -- problems and limits --------------------------------------------------------------------
def test_each_refusal_is_a_problem(http: httpx.Client, base: Path) -> None:
    root = base / "root"
    body = _problem(
        http.get("/v1/fs/file", params={"path": "/etc/passwd"}), 400, "path_outside_root"
    )
    assert body["details"] == {"path": "/etc/passwd"}
    _problem(http.get("/v1/fs/stat", params={"path": "missing"}), 404, "path_not_found")
    _problem(http.get("/v1/fs/entries", params={"path": "inside.txt"}), 400, "invalid_request")
    _problem(http.get("/v1/fs/file", params={"path": "sub"}), 400, "invalid_request")
    _problem(http.get("/v1/fs/file", params={"path": "a\0b"}), 400, "invalid_request")
    exists = http.post("/v1/fs/move", json={"from": "inside.txt", "to": "sub/f.txt"})
    _problem(exists, 409, "path_exists")
    _problem(http.delete("/v1/fs/entry", params={"path": "sub"}), 409, "directory_not_empty")
    plain = http.post("/v1/fs/upload-batch", content=b"x", headers={"content-type": "text/plain"})
    _problem(plain, 400, "invalid_request")
    bad = http.post(
        "/v1/fs/upload-batch", content=b"not a tar", headers={"content-type": "application/x-tar"}
    )
    _problem(bad, 400, "invalid_request")
    escaping = http.post(
        "/v1/fs/upload-batch",
        params={"path": "esc"},
        content=_tar({"ok.txt": b"1", "../../escape.txt": b"2"}),
        headers={"content-type": "application/x-tar"},
    )
    _problem(escaping, 400, "path_outside_root")
    assert not (root / "esc").exists() and not (base / "escape.txt").exists()


def test_bodies_are_streamed_past_the_json_limit_up_to_the_file_limit(
    http: httpx.Client, base: Path
) -> None:
    root = base / "root"
    # The server takes JSON bodies of MAX_BODY_BYTES at most, files up to MAX_FILE_BYTES.
    data = os.urandom(MAX_FILE_BYTES)
    assert http.put("/v1/fs/file", params={"path": "max.bin"}, content=data).json()[
        "bytesWritten"
    ] == len(data)
    assert http.get("/v1/fs/file", params={"path": "max.bin"}).content == data
    over = http.put("/v1/fs/file", params={"path": "max.bin"}, content=data + b"!")
    assert _problem(over, 413, "payload_too_large")["limit"] == MAX_FILE_BYTES
    assert (root / "max.bin").read_bytes() == data  # the old content, whole
    assert not [p for p in os.listdir(root) if p.startswith(".sandbox-agent-")]
    (root / "max.bin").unlink()
    many = _tar({f"f{i}": b"" for i in range(MAX_TAR_ENTRIES + 1)})
    refused = http.post(
        "/v1/fs/upload-batch",
        params={"path": "many"},
        content=many,
        headers={"content-type": "application/x-tar"},
    )
    assert _problem(refused, 413, "payload_too_large")["limit"] == MAX_TAR_ENTRIES
    assert not (root / "many").exists()


# -- the attack suite over HTTP ---------------------------------------------------------------
def _reset(root: Path) -> None:
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    fresh = root.parent / "fresh"
    make_sentinel(fresh)
    for child in (fresh / "root").iterdir():
        os.rename(child, root / child.name)
    shutil.rmtree(fresh)


def _http_attack(http: httpx.Client, operation: str, path: str, other: str) -> httpx.Response:
    tar = {"content-type": "application/x-tar"}
    if operation == "read":
        return http.get("/v1/fs/file", params={"path": path})
    if operation == "entries":
        return http.get("/v1/fs/entries", params={"path": path})
    if operation == "stat":
        return http.get("/v1/fs/stat", params={"path": path})
    if operation == "write":
        return http.put("/v1/fs/file", params={"path": path}, content=b"written")
    if operation == "mkdir":
        return http.post("/v1/fs/mkdir", params={"path": path})
    if operation == "delete":
        return http.delete("/v1/fs/entry", params={"path": path, "recursive": "true"})
    if operation == "move":
        return http.post("/v1/fs/move", json={"from": path, "to": other, "overwrite": True})
    if operation == "upload":
        return http.post(
            "/v1/fs/upload-batch", params={"path": path}, content=_tar({other: b"u"}), headers=tar
        )
    raise AssertionError(operation)


def check_request(http: httpx.Client, base: Path, operation: str, path: str, other: str) -> None:
    root = base / "root"
    _reset(root)
    before = snapshot(base, root)
    answer = _http_attack(http, operation, fill(path, base), fill(other, base).replace("\0", ""))
    assert answer.status_code < 500, answer.text
    assert snapshot(base, root) == before
    assert SECRET not in answer.content
    if answer.status_code == 200 and operation != "read":
        text = json.dumps(answer.json())
        for outside in (base / "outside", base / "root2", base / "secret.txt"):
            assert f'"{outside}' not in text and f"{outside}/" not in text


OPERATIONS = ["read", "entries", "stat", "write", "mkdir", "delete", "move", "upload"]
FIXTURES_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=10, deadline=None, suppress_health_check=FIXTURES_OK)
@given(operation=st.sampled_from(OPERATIONS), path=paths(), other=paths())
def test_no_request_reaches_outside_the_root(
    http: httpx.Client, base: Path, operation: str, path: str, other: str
) -> None:
    check_request(http, base, operation, path, other)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURES_OK)
@given(operation=st.sampled_from(OPERATIONS), path=paths(), other=paths())
def test_no_request_reaches_outside_the_root_long(
    http: httpx.Client, base: Path, operation: str, path: str, other: str
) -> None:
    check_request(http, base, operation, path, other)


# -- a write cut short ------------------------------------------------------------------------
def _start_put(url: str, path: str, declared: int, sent: bytes) -> socket.socket:
    """A raw ``PUT /v1/fs/file`` that declares ``declared`` bytes and sends ``sent`` only."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    head = (
        f"PUT /v1/fs/file?path={path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    )
    connection.sendall(head.encode() + sent)
    return connection


def _temporaries(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".sandbox-agent-")]


def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_client_gone_mid_body_leaves_the_old_file_and_no_temporary(
    server: ServerProcess, base: Path
) -> None:
    directory = base / "root" / "cut"
    directory.mkdir()
    (directory / "f.bin").write_bytes(b"old")
    connection = _start_put(server.url, "cut/f.bin", 3 * MAX_FILE_BYTES // 4, os.urandom(2**20 * 2))
    _until(lambda: bool(_temporaries(directory)))  # the server is writing
    connection.close()
    _until(lambda: not _temporaries(directory))
    assert (directory / "f.bin").read_bytes() == b"old"
    shutil.rmtree(directory)


@pytest.mark.slow  # a server of its own, killed and restarted
def test_a_server_killed_mid_write_leaves_the_old_file_whole(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(b"old")
    args = ["--no-token", "--root", str(root)]
    process = ServerProcess(f"sqlite:///{tmp_path}/store.db", tmp_path / "log", args=args)
    process.start()
    try:
        connection = _start_put(process.url, "f.bin", 8 * 2**20, os.urandom(2**20 * 4))
        _until(lambda: bool(_temporaries(root)))
        process.kill()
        connection.close()
        assert (root / "f.bin").read_bytes() == b"old"
        process.restart()
        with httpx.Client(base_url=process.url) as http:
            assert http.get("/v1/fs/file", params={"path": "f.bin"}).content == b"old"
            # What the crash left: the partial temporary beside it, never the file itself.
            assert [e["name"] for e in http.get("/v1/fs/entries").json()] == [
                *sorted(_temporaries(root)),
                "f.bin",
            ]
    finally:
        process.stop()
