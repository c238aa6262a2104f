"""``FsApi``: the server's filesystem API (``/v1/fs/...``), typed, bodies streamed both ways.

``sdk.fs`` (``SandboxAgent``) and ``sdk.fs`` (``SandboxAgentSync``, blocking) are this class;
the CLI's ``api fs`` commands use it too. Every path lies inside the server's root (else
``SandboxAgentError`` 400 ``path_outside_root``); a relative one is resolved against the
session's directory when ``session_id`` is given, else against the root. With ``session_id``,
each change is recorded in that session's stream (``fs.changed``).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import IO, Any

import httpx

from sandbox_agent.api import (
    FsEntry,
    FsMoveRequest,
    FsMoveResponse,
    FsPathResponse,
    FsStat,
    FsUploadResponse,
    FsWriteResponse,
)
from sandbox_agent.sdk.errors import SandboxAgentError
from sandbox_agent.sdk.http import ApiClient

#: Bytes read from a local file at a time when one is sent.
CHUNK_BYTES = 1024 * 1024
#: No bound on reading or writing a body (a large file takes as long as it takes); the
#: connection's own timeout stays.
_STREAM_TIMEOUT = httpx.Timeout(None, connect=10.0)

#: What ``write`` sends: bytes, a local file's path, a binary file open for reading, or chunks.
Content = bytes | Path | IO[bytes] | Iterable[bytes] | AsyncIterable[bytes]


class FsApi:
    """The filesystem API of one server, over ``api`` (an ``ApiClient``)."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def entries(self, path: str = ".", session_id: str | None = None) -> list[FsEntry]:
        """A directory's entries, sorted by name."""
        found = await self.api.request_json("GET", "/v1/fs/entries", params=_q(path, session_id))
        return [FsEntry.model_validate(e) for e in found or []]

    async def stat(self, path: str, session_id: str | None = None) -> FsStat:
        answer = await self.api.request_json("GET", "/v1/fs/stat", params=_q(path, session_id))
        return FsStat.model_validate(answer)

    async def read(self, path: str, session_id: str | None = None) -> bytes:
        """The whole file in memory (``read_to`` or ``iter_read`` for a large one)."""
        return b"".join([chunk async for chunk in self.iter_read(path, session_id)])

    async def iter_read(self, path: str, session_id: str | None = None) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive."""
        request = self.api.http.build_request(
            "GET", "/v1/fs/file", params=_q(path, session_id), timeout=_STREAM_TIMEOUT
        )
        response = await self.api.http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise SandboxAgentError.from_response(response)
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()

    async def read_to(self, path: str, destination: Path, session_id: str | None = None) -> int:
        """Stream the file into the local file ``destination``; the bytes written."""
        size = 0
        with destination.open("wb") as out:
            async for chunk in self.iter_read(path, session_id):
                await asyncio.to_thread(out.write, chunk)
                size += len(chunk)
        return size

    async def write(
        self, path: str, content: Content, session_id: str | None = None
    ) -> FsWriteResponse:
        """Write ``content`` to ``path`` (parents created, an existing file replaced whole)."""
        response = await self.api.http.put(
            "/v1/fs/file",
            params=_q(path, session_id),
            content=_body(content),
            headers={"Content-Type": "application/octet-stream"},
            timeout=_STREAM_TIMEOUT,
        )
        return FsWriteResponse.model_validate(_json(response))

    async def mkdir(self, path: str, session_id: str | None = None) -> FsPathResponse:
        answer = await self.api.request_json("POST", "/v1/fs/mkdir", params=_q(path, session_id))
        return FsPathResponse.model_validate(answer)

    async def move(
        self,
        source: str,
        destination: str,
        overwrite: bool = False,
        session_id: str | None = None,
    ) -> FsMoveResponse:
        body = FsMoveRequest(from_path=source, to=destination, overwrite=overwrite)
        answer = await self.api.request_json(
            "POST", "/v1/fs/move", json=body.wire(), params=_q(None, session_id)
        )
        return FsMoveResponse.model_validate(answer)

    async def delete(
        self, path: str, recursive: bool = False, session_id: str | None = None
    ) -> FsPathResponse:
        params = {**_q(path, session_id), "recursive": "true" if recursive else None}
        answer = await self.api.request_json("DELETE", "/v1/fs/entry", params=params)
        return FsPathResponse.model_validate(answer)

    async def upload(
        self, archive: Content, path: str = ".", session_id: str | None = None
    ) -> FsUploadResponse:
        """Unpack a tar archive (plain or gzip: sent as ``application/gzip`` when ``archive``
        is bytes or a path that starts with gzip's magic) into ``path``."""
        response = await self.api.http.post(
            "/v1/fs/upload-batch",
            params=_q(path, session_id),
            content=_body(archive),
            headers={"Content-Type": _tar_type(archive)},
            timeout=_STREAM_TIMEOUT,
        )
        return FsUploadResponse.model_validate(_json(response))


def _q(path: str | None, session_id: str | None) -> dict[str, Any]:
    return {k: v for k, v in {"path": path, "session_id": session_id}.items() if v is not None}


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise SandboxAgentError.from_response(response)
    return response.json()


def _body(content: Content) -> bytes | AsyncIterator[bytes] | Iterable[bytes]:
    if isinstance(content, bytes):
        return content
    if isinstance(content, Path):
        return _file_chunks(content)
    if isinstance(content, AsyncIterable):
        return _async(content)
    if hasattr(content, "read"):
        return _reader_chunks(content)  # type: ignore[arg-type]
    return _async_of(content)  # an AsyncClient sends async bodies only


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
            yield chunk


async def _reader_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
        yield chunk


async def _async(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk


async def _async_of(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _tar_type(archive: Content) -> str:
    head = b""
    if isinstance(archive, bytes):
        head = archive[:2]
    elif isinstance(archive, Path):
        with archive.open("rb") as file:
            head = file.read(2)
    return "application/gzip" if head == gzip.compress(b"")[:2] else "application/x-tar"
