"""The filesystem API (v0.1 ``/v1/fs/...``) over ``sessions.files``: every path inside the
server's root; bodies streamed both ways, in chunks of ``CHUNK_BYTES``, never held whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import IO, Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from sandbox_agent.api import (
    ID_PATTERN,
    FsEntry,
    FsMoveRequest,
    FsMoveResponse,
    FsPathResponse,
    FsStat,
    FsUploadResponse,
    FsWriteResponse,
)
from sandbox_agent.server.errors import invalid_request
from sandbox_agent.server.responses import problems
from sandbox_agent.server.routes.deps import engine_of
from sandbox_agent.sessions import LiveSession
from sandbox_agent.sessions.files import (
    CHUNK_BYTES,
    ArchiveSpool,
    Entry,
    Jail,
    record_change,
    session_base,
)

router = APIRouter(prefix="/v1/fs", tags=["fs"])

PathQuery = Annotated[
    str, Query(description="Absolute, or relative to the session's directory (else the root).")
]
SessionQuery = Annotated[
    str | None, Query(pattern=ID_PATTERN, description="Resolve relative paths in its directory.")
]
#: What an upload may be sent as (gzip or not: the archive itself says).
TAR_TYPES = ("application/x-tar", "application/tar", "application/gzip", "application/x-gzip")


def jail_of(request: Request) -> Jail:
    jail: Jail = request.app.state.fs
    return jail


async def _session(
    request: Request, session_id: str | None, sessionId: str | None, *, changing: bool
) -> tuple[LiveSession | None, str | None]:
    """The session named (either spelling) and the base of relative paths."""
    name = session_id or sessionId
    session = await engine_of(request).get(name) if name else None
    return session, await session_base(session, changing=changing)


def _entry(entry: Entry) -> FsEntry:
    return FsEntry(
        name=entry.name,
        path=entry.path,
        entry_type=entry.entry_type,
        size=entry.size,
        modified=entry.modified,
    )


async def _stream_into(request: Request, write: Callable[[bytes], None]) -> None:
    """The request's body to ``write`` in a thread, about ``CHUNK_BYTES`` at a time; the next
    chunk is received while the last one is written (two in memory at most)."""
    buffered: list[bytes] = []
    size = 0
    writing: asyncio.Future[None] | None = None
    try:
        async for chunk in request.stream():
            buffered.append(chunk)
            size += len(chunk)
            if size >= CHUNK_BYTES:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(write, b"".join(buffered)))
                buffered, size = [], 0
        if writing is not None:
            await writing
            writing = None
        if size:
            await asyncio.to_thread(write, b"".join(buffered))
    finally:
        if writing is not None and not writing.done():
            # The client went away mid-body: the write in flight ends before the caller aborts.
            await asyncio.wait([writing])


async def _stream_from(file: IO[bytes]) -> AsyncIterator[bytes]:
    """The file's bytes, ``CHUNK_BYTES`` at a time; the next chunk is read while the last one
    is sent. Closes the file."""
    reading = asyncio.ensure_future(asyncio.to_thread(file.read, CHUNK_BYTES))
    try:
        while chunk := await reading:
            reading = asyncio.ensure_future(asyncio.to_thread(file.read, CHUNK_BYTES))
            yield chunk
    finally:
        if not reading.done():  # the client went away: no close under a read in flight
            await asyncio.wait([reading])
        await asyncio.to_thread(file.close)


@router.get("/entries", response_model=list[FsEntry], responses=problems(400, 404))
async def entries(
    request: Request,
    path: PathQuery = ".",
    session_id: SessionQuery = None,
    sessionId: SessionQuery = None,
) -> list[FsEntry]:
    """A directory's entries, sorted by name (a symlink shows as a ``file``)."""
    _, base = await _session(request, session_id, sessionId, changing=False)
    found = await asyncio.to_thread(jail_of(request).entries, path, base)
    return [_entry(e) for e in found]


@router.get("/stat", response_model=FsStat, responses=problems(400, 404))
async def stat(
    request: Request,
    path: PathQuery,
    session_id: SessionQuery = None,
    sessionId: SessionQuery = None,
) -> FsStat:
    _, base = await _session(request, session_id, sessionId, changing=False)
    entry = await asyncio.to_thread(jail_of(request).stat, path, base)
    return FsStat(
        path=entry.path, entry_type=entry.entry_type, size=entry.size, modified=entry.modified
    )


@router.get(
    "/file",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"},
        **problems(400, 404),
    },
)
async def read_file(
    request: Request,
    path: PathQuery,
    session_id: SessionQuery = None,
    sessionId: SessionQuery = None,
) -> StreamingResponse:
    """The file's bytes (``application/octet-stream``), streamed from the open file."""
    _, base = await _session(request, session_id, sessionId, changing=False)
    file, size, _real = await asyncio.to_thread(jail_of(request).open_read, path, base)
    return StreamingResponse(
        _stream_from(file),
        media_type="application/octet-stream",
        headers={"Content-Length": str(size)},
    )


@router.put("/file", response_model=FsWriteResponse, responses=problems(400, 404, 413))
async def write_file(
    request: Request,
    path: PathQuery,
    session_id: SessionQuery = None,
    sessionId: SessionQuery = None,
) -> FsWriteResponse:
    """Write the body (raw bytes) to ``path``: into a new file beside it, fsynced, then renamed
    over it; parents created. Over the file size limit: 413, nothing changed."""
    session, base = await _session(request, session_id, sessionId, changing=True)
    pending = await asyncio.to_thread(jail_of(request).begin_write, path, base)
    try:
        await _stream_into(request, pending.write)
    except BaseException:
        await asyncio.to_thread(pending.abort)
        raise
    written = await asyncio.to_thread(pending.commit)
    await record_change(session, "write", written.path, size=written.size, sha256=written.sha256)
    return FsWriteResponse(path=written.path, bytes_written=written.size)


@router.delete("/entry", response_model=FsPathResponse, responses=problems(400, 404, 409))
async def delete_entry(
    request: Request,
    path: PathQuery,
    recursive: bool = False,
    session_id: SessionQuery = None,
    sessionId: SessionQuery = None,
) -> FsPathResponse:
    """A file or symlink, or a directory (empty unless ``recursive``)."""
    session, base = await _session(request, session_id, sessionId, changing=True)
    jail = jail_of(request)
    deleted = await asyncio.to_thread(jail.delete, path, base, recursive)
    await record_change(session, "delete", deleted)
    return FsPathResponse(path=deleted)


@router.post("/mkdir", response_model=FsPathResponse, responses=problems(400, 404))
async def mkdir(
    request: Request,
    path: PathQuery,
    session_id: SessionQuery = None,
    sessionId: SessionQuery = None,
) -> FsPathResponse:
    """``mkdir -p``."""
    session, base = await _session(request, session_id, sessionId, changing=True)
    made = await asyncio.to_thread(jail_of(request).mkdir, path, base)
    await record_change(session, "mkdir", made)
    return FsPathResponse(path=made)


@router.post("/move", response_model=FsMoveResponse, responses=problems(400, 404, 409))
async def move(
    request: Request,
    body: FsMoveRequest,
    session_id: SessionQuery = None,
    sessionId: SessionQuery = None,
) -> FsMoveResponse:
    """Rename ``from`` to ``to``; an existing ``to`` only with ``overwrite`` (409 else)."""
    session, base = await _session(request, session_id, sessionId, changing=True)
    jail = jail_of(request)
    src, dst = await asyncio.to_thread(jail.move, body.from_path, body.to, base, body.overwrite)
    await record_change(session, "move", dst, from_path=src)
    return FsMoveResponse(from_path=src, to=dst)


@router.post("/upload-batch", response_model=FsUploadResponse, responses=problems(400, 404, 413))
async def upload_batch(
    request: Request,
    path: PathQuery = ".",
    session_id: SessionQuery = None,
    sessionId: SessionQuery = None,
) -> FsUploadResponse:
    """Unpack a tar archive (plain or gzip; ``Content-Type: application/x-tar`` or
    ``application/gzip``) into ``path``. Every entry is checked first: one outside the root
    (``..``, absolute, a link out) refuses the whole archive, nothing unpacked."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in TAR_TYPES:
        raise invalid_request(f"Content-Type must be one of {', '.join(TAR_TYPES)}")
    session, base = await _session(request, session_id, sessionId, changing=True)
    jail = jail_of(request)
    spool = await asyncio.to_thread(ArchiveSpool, jail)
    try:
        await _stream_into(request, spool.write)
        unpacked = await asyncio.to_thread(jail.unpack, spool.file, path, base)
    finally:
        await asyncio.to_thread(spool.close)
    target = await asyncio.to_thread(jail.resolve, path, base)
    await record_change(
        session,
        "upload",
        target,
        size=unpacked.size,
        sha256=unpacked.sha256,
        entries=unpacked.count,
    )
    return FsUploadResponse(paths=unpacked.paths, truncated=unpacked.truncated)
