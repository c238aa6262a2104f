"""The filesystem API's bodies (v0.1 shapes, ``/v1/fs/...``). Paths in answers are absolute
and real (their symlinks resolved, inside the server's root)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from sandbox_agent.api.base import ApiModel


class FsEntry(ApiModel):
    """An entry of a directory listing, or a ``stat`` answer (v0.1 ``FsEntry``)."""

    name: str
    path: str
    entry_type: Literal["file", "directory"]
    size: int
    modified: datetime | None = None


class FsStat(ApiModel):
    path: str
    entry_type: Literal["file", "directory"]
    size: int
    modified: datetime | None = None


class FsWriteResponse(ApiModel):
    path: str
    bytes_written: int


class FsPathResponse(ApiModel):
    """The answer of ``mkdir`` and ``delete``."""

    path: str


class FsMoveRequest(ApiModel):
    from_path: str = Field(alias="from")
    to: str
    overwrite: bool = False


class FsMoveResponse(ApiModel):
    from_path: str = Field(alias="from")
    to: str


class FsUploadResponse(ApiModel):
    """The first 1024 paths unpacked; ``truncated`` when there were more."""

    paths: list[str]
    truncated: bool
