"""The filesystem API's work, with no HTTP in it: every path resolved inside the server's root
(the jail), writes that land whole or not at all, tar archives checked before anything is
unpacked, and each change a client makes recorded in its session's stream (``fs.changed``).

The jail: a path (absolute, or relative to a base: the session's directory or the root) is
resolved with every symlink on the way (``os.path.realpath``) and must lie inside the root; else
``PathOutsideRoot``, before anything is touched. Operations on an entry itself (delete, move)
resolve its parent only, so that they act on a symlink, not on what it points to. A file is
opened, then its open descriptor's real path checked again (``/proc/self/fd``), so a link swapped
in after the check is not read or written through.

The calls here block (they touch the disk): callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Literal

from sandbox_agent.events import EventDraft, FsChangedData, FsOperation
from sandbox_agent.sessions.errors import FsError, InvalidSessionRequest, PathOutsideRoot
from sandbox_agent.sessions.session import LiveSession

#: Defaults of the server's ``--fs-*`` options (docs/server.md, Limits).
DEFAULT_MAX_FILE_BYTES = 4 * 1024**3
DEFAULT_MAX_TAR_ENTRIES = 100_000
DEFAULT_MAX_TAR_BYTES = 4 * 1024**3
DEFAULT_MAX_PATH_CHARS = 4096
#: Paths an upload answers with at most (v0.1: 1024, then ``truncated``).
MAX_LISTED_PATHS = 1024
#: Bytes read from a file or an archive at a time.
CHUNK_BYTES = 1024 * 1024
_TEMP_PREFIX = ".sandbox-agent-"
#: Threads that hash what writes write (one chunk each at a time).
_HASHER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fs-hash")
_PROC_FD = "/proc/self/fd"

EntryType = Literal["file", "directory"]


@dataclass(frozen=True)
class FsLimits:
    """The filesystem API's limits (each a server option)."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_tar_entries: int = DEFAULT_MAX_TAR_ENTRIES
    #: The sum of an archive's entries' sizes, unpacked (and the archive's own size).
    max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES
    max_path_chars: int = DEFAULT_MAX_PATH_CHARS


@dataclass(frozen=True)
class Entry:
    """One directory entry or ``stat`` answer (v0.1 ``FsEntry``)."""

    name: str
    path: str
    entry_type: EntryType
    size: int
    modified: datetime | None


@dataclass(frozen=True)
class Written:
    """A file written: its path, size and sha256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Unpacked:
    """An archive unpacked: the first ``MAX_LISTED_PATHS`` paths made, their number, the
    archive's size and sha256."""

    paths: list[str]
    count: int
    size: int
    sha256: str

    @property
    def truncated(self) -> bool:
        return self.count > len(self.paths)


def os_error(exc: OSError, path: str) -> FsError:
    """The ``FsError`` of an operating system error on ``path`` (as the client gave it)."""
    code = exc.errno
    if code == errno.ENOENT:
        return FsError("not_found", f"path not found: {path}", path)
    if code == errno.EEXIST:
        return FsError("exists", f"path already exists: {path}", path)
    if code == errno.ENOTEMPTY:
        return FsError("not_empty", f"directory not empty: {path}", path)
    if code == errno.ENOTDIR:
        return FsError("invalid", f"not a directory on the way: {path}", path)
    if code == errno.EISDIR:
        return FsError("invalid", f"is a directory: {path}", path)
    if code == errno.ENAMETOOLONG:
        return FsError("invalid", f"name too long: {path[:200]}", path)
    if code in (errno.EPERM, errno.EACCES):
        return FsError("denied", f"{exc.strerror}: {path}", path)
    if code in (errno.ELOOP, errno.EINVAL, errno.EXDEV):
        return FsError("invalid", f"{exc.strerror}: {path}", path)
    return FsError("io", f"{exc.strerror or exc}: {path}", path)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Jail:
    """Paths and operations inside ``root`` (made real once, at start)."""

    def __init__(self, root: str, limits: FsLimits | None = None) -> None:
        self.root = os.path.realpath(root)
        self.limits = limits or FsLimits()

    # -- paths -------------------------------------------------------------------------------
    def resolve(self, path: str, base: str | None = None, *, follow: bool = True) -> str:
        """The real, absolute path of ``path`` (relative to ``base``, default the root) inside
        the root. ``follow=False``: the last name is kept as it is (a symlink itself), only the
        directory holding it is resolved. ``PathOutsideRoot``, or ``InvalidSessionRequest`` for
        a NUL or a path over the length limit."""
        if "\0" in path:
            raise InvalidSessionRequest(f"a path contains a NUL character: {path!r}")
        if len(path) > self.limits.max_path_chars:
            raise InvalidSessionRequest(
                f"a path is longer than {self.limits.max_path_chars} characters"
            )
        joined = os.path.join(base or self.root, path or ".")
        head, tail = os.path.split(joined)
        if follow or tail in ("", ".", ".."):
            resolved = os.path.realpath(joined)
        else:
            resolved = os.path.join(os.path.realpath(head), tail)
        if not _inside(resolved, self.root):
            raise PathOutsideRoot("path", path)
        return resolved

    def _check_fd(self, fd: int, path: str) -> None:
        """The open file ``fd`` lies inside the root (a link swapped in after ``resolve`` would
        show here); else close it and raise ``PathOutsideRoot``."""
        try:
            real = os.readlink(f"{_PROC_FD}/{fd}")
        except OSError:
            return  # no /proc (not Linux): resolve's check stands alone
        if not _inside(real, self.root):
            os.close(fd)
            raise PathOutsideRoot("path", path)

    # -- reading -----------------------------------------------------------------------------
    def entries(self, path: str, base: str | None = None) -> list[Entry]:
        """The entries of a directory, sorted by name; an entry's own metadata (a symlink is
        not followed: it shows as a ``file``)."""
        directory = self.resolve(path, base)
        try:
            with os.scandir(directory) as scan:
                found = sorted(scan, key=lambda e: e.name)
                return [_entry(e.name, e.path, e.stat(follow_symlinks=False)) for e in found]
        except NotADirectoryError:
            raise FsError("invalid", f"path is not a directory: {path}", path) from None
        except OSError as exc:
            raise os_error(exc, path) from None

    def stat(self, path: str, base: str | None = None) -> Entry:
        """The entry at ``path``, its symlinks followed (inside the root)."""
        resolved = self.resolve(path, base)
        try:
            return _entry(os.path.basename(resolved), resolved, os.stat(resolved))
        except OSError as exc:
            raise os_error(exc, path) from None

    def open_read(self, path: str, base: str | None = None) -> tuple[IO[bytes], int, str]:
        """The file at ``path`` open for reading, its size and real path."""
        resolved = self.resolve(path, base)
        try:
            fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise os_error(exc, path) from None
        self._check_fd(fd, path)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise FsError("invalid", f"path is not a file: {path}", path)
        return os.fdopen(fd, "rb", buffering=0), info.st_size, resolved

    # -- changing ----------------------------------------------------------------------------
    def mkdir(self, path: str, base: str | None = None) -> str:
        """``mkdir -p``; the directory's real path."""
        resolved = self.resolve(path, base)
        try:
            os.makedirs(resolved, exist_ok=True)
        except FileExistsError:
            raise FsError("invalid", f"path is not a directory: {path}", path) from None
        except OSError as exc:
            raise os_error(exc, path) from None
        return self.resolve(resolved)  # made through a link swapped in meanwhile: refused

    def delete(self, path: str, base: str | None = None, recursive: bool = False) -> str:
        """Remove a file, a symlink (not what it points to) or a directory (empty, or with
        ``recursive``); its path."""
        resolved = self.resolve(path, base, follow=False)
        if resolved == self.root:
            raise FsError("invalid", "the root cannot be deleted", path)
        try:
            info = os.lstat(resolved)
            if not stat.S_ISDIR(info.st_mode):
                os.unlink(resolved)
            elif recursive:
                shutil.rmtree(resolved)  # does not follow symlinks inside it
            else:
                os.rmdir(resolved)
        except OSError as exc:
            raise os_error(exc, path) from None
        return resolved

    def move(
        self, source: str, destination: str, base: str | None = None, overwrite: bool = False
    ) -> tuple[str, str]:
        """Rename ``source`` (a symlink itself, not its target) to ``destination``, creating the
        destination's parents; an existing destination only with ``overwrite`` (removed
        first). The two real paths."""
        src = self.resolve(source, base, follow=False)
        dst = self.resolve(destination, base, follow=False)
        if self.root in (src, dst):
            raise FsError("invalid", "the root cannot be moved or replaced", source)
        try:
            os.lstat(src)
            if os.path.lexists(dst):
                if not overwrite:
                    raise FsError(
                        "exists", f"destination already exists: {destination}", destination
                    )
                if os.path.isdir(dst) and not os.path.islink(dst):
                    shutil.rmtree(dst)
                else:
                    os.unlink(dst)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.rename(src, dst)
        except FsError:
            raise
        except OSError as exc:
            raise os_error(exc, source) from None
        return src, dst

    def begin_write(self, path: str, base: str | None = None) -> PendingFile:
        """A new file beside the file at ``path`` (parents created), to write and then
        ``commit`` over it in one rename; nothing changes at ``path`` until then."""
        target = self.resolve(path, base)
        if target == self.root:
            raise FsError("invalid", f"is a directory: {path}", path)
        parent = os.path.dirname(target)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, path) from None
        if os.path.isdir(target):
            raise FsError("invalid", f"is a directory: {path}", path)
        return PendingFile(self, target, path)

    def unpack(self, archive: IO[bytes], path: str, base: str | None = None) -> Unpacked:
        """Unpack a tar archive (plain or gzip) read from ``archive`` (seekable) into the
        directory at ``path``. Every entry is checked before any is unpacked: its path and a
        link's target inside the root, no device or fifo, the limits; one bad entry refuses
        the archive with nothing unpacked. Each is checked again as it is unpacked (a link
        unpacked earlier is then on the disk)."""
        directory = self.resolve(path, base)
        size, digest = _size_and_digest(archive)
        limits = self.limits
        if size > limits.max_tar_bytes:
            raise FsError("too_large", "archive over the limit", path, limits.max_tar_bytes)
        try:
            tar = tarfile.open(fileobj=archive, mode="r:*")  # noqa: SIM115 (closed below)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise FsError("invalid", f"not a tar archive: {exc}", path) from None
        with tar:
            try:
                members = _members(tar, limits)
            except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
                raise FsError("invalid", f"bad tar archive: {exc}", path) from None
            plan = [(m, self._place(m, directory)) for m in members]
            paths: list[str] = []
            for member, target in plan:
                self._unpack_one(tar, member, self._place(member, directory), directory)
                if len(paths) < MAX_LISTED_PATHS:
                    paths.append(target)
        # One sync for the whole archive, not two fsyncs per entry (1000 small files: 5 s).
        os.sync()
        return Unpacked(paths=paths, count=len(plan), size=size, sha256=digest)

    def _place(self, member: tarfile.TarInfo, directory: str) -> str:
        """Where ``member`` goes, checked: inside the root, and a link's target too."""
        name = member.name
        if "\0" in name or os.path.isabs(name) or ".." in name.split("/"):
            raise PathOutsideRoot("entry", name)
        target = self.resolve(name, directory, follow=False)
        if member.issym():
            link_base = os.path.dirname(target)
            if os.path.isabs(member.linkname) or not _inside(
                os.path.realpath(os.path.join(link_base, member.linkname)), self.root
            ):
                raise PathOutsideRoot("entry", f"{name} -> {member.linkname}")
        elif member.islnk():
            linked = member.linkname
            if os.path.isabs(linked) or ".." in linked.split("/"):
                raise PathOutsideRoot("entry", f"{name} -> {linked}")
            self.resolve(linked, directory)
        return target

    def _unpack_one(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: str, directory: str
    ) -> None:
        name = member.name
        try:
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                self.resolve(target)
                return
            os.makedirs(os.path.dirname(target), exist_ok=True)
            temp = _temp_name(target)
            if member.issym():
                os.symlink(member.linkname, temp)
            elif member.islnk():
                os.link(self.resolve(member.linkname, directory), temp, follow_symlinks=False)
            else:
                source = tar.extractfile(member)
                assert source is not None  # a regular file (_members let no other kind in)
                pending = PendingFile(self, target, name)
                with source:
                    try:
                        while chunk := source.read(CHUNK_BYTES):
                            pending.write(chunk)
                    except BaseException:
                        pending.abort()
                        raise
                pending.commit(mode=member.mode & 0o777, durable=False)
                return
            os.rename(temp, target)
        except (FsError, PathOutsideRoot):
            raise
        except (OSError, tarfile.TarError) as exc:
            raise (
                os_error(exc, name)
                if isinstance(exc, OSError)
                else FsError("invalid", f"bad tar archive: {exc}", name)
            ) from None


class PendingFile:
    """A file being written beside its target; ``commit`` renames it over the target (after
    an fsync), ``abort`` removes it. Over ``max_file_bytes``: ``FsError`` and removed."""

    def __init__(self, jail: Jail, target: str, given: str) -> None:
        self.target = target
        self.given = given
        self.limit = jail.limits.max_file_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._temp = _temp_name(target)
        try:
            fd = os.open(
                self._temp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o666,
            )
        except OSError as exc:
            raise os_error(exc, given) from None
        try:
            jail._check_fd(fd, given)
        except PathOutsideRoot:
            os.unlink(self._temp)
            raise
        self._file = os.fdopen(fd, "wb", buffering=0)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.abort()
            raise FsError("too_large", "file over the limit", self.given, self.limit)
        # The digest and the write overlap (both release the GIL): a write costs the longer
        # of the two, not their sum.
        hashed = _HASHER.submit(self._hash.update, data)
        try:
            view = memoryview(data)
            while view:
                view = view[self._file.write(view) or 0 :]
        finally:
            hashed.result()

    def commit(self, mode: int | None = None, durable: bool = True) -> Written:
        """``durable=False``: no fsync here (an upload syncs once, after its last entry)."""
        try:
            if mode is None and os.path.exists(self.target):
                mode = stat.S_IMODE(os.stat(self.target).st_mode)
            if mode is not None:
                os.fchmod(self._file.fileno(), mode)
            if durable:
                os.fsync(self._file.fileno())
            self._file.close()
            os.rename(self._temp, self.target)
            if durable:
                _fsync_directory(os.path.dirname(self.target))
        except OSError as exc:
            self.abort()
            raise os_error(exc, self.given) from None
        return Written(self.target, self.size, self._hash.hexdigest())

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)


def _temp_name(target: str) -> str:
    directory, name = os.path.split(target)
    return os.path.join(directory, f"{_TEMP_PREFIX}{secrets.token_hex(6)}-{name[:100]}")


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry(name: str, path: str, info: os.stat_result) -> Entry:
    return Entry(
        name=name,
        path=path,
        entry_type="directory" if stat.S_ISDIR(info.st_mode) else "file",
        size=info.st_size,
        modified=datetime.fromtimestamp(info.st_mtime, UTC),
    )


def _size_and_digest(archive: IO[bytes]) -> tuple[int, str]:
    archive.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := archive.read(CHUNK_BYTES):
        size += len(chunk)
        digest.update(chunk)
    archive.seek(0)
    return size, digest.hexdigest()


def _members(tar: tarfile.TarFile, limits: FsLimits) -> list[tarfile.TarInfo]:
    """The archive's entries to unpack (empty names and ``.`` skipped), within the limits."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in _iter_members(tar):
        name = member.name.strip("/") if not member.name.startswith("/") else member.name
        if name in ("", "."):
            continue
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise FsError(
                "invalid", f"tar entry of an unsupported kind: {member.name}", member.name
            )
        if len(members) >= limits.max_tar_entries:
            raise FsError("too_large", "archive has too many entries", None, limits.max_tar_entries)
        total += max(member.size, 0)
        if total > limits.max_tar_bytes:
            raise FsError("too_large", "archive unpacks over the limit", None, limits.max_tar_bytes)
        if len(name) > limits.max_path_chars:
            raise FsError("invalid", f"tar entry name over {limits.max_path_chars} characters")
        member.name = name.removeprefix("./")
        members.append(member)
    return members


def _iter_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tar.next()) is not None:
        yield member


# -- the session's stream ------------------------------------------------------------------
async def session_base(session: LiveSession | None, *, changing: bool) -> str | None:
    """The directory relative paths are resolved against (the session's, else None for the
    root). A change in an ended session is refused (its stream is closed):
    ``InvalidSessionRequest``."""
    if session is None:
        return None
    if changing and session.state.ended is not None:
        raise InvalidSessionRequest("session ended", session.id)
    return session.directory


async def record_change(
    session: LiveSession | None,
    operation: FsOperation,
    path: str,
    *,
    size: int | None = None,
    sha256: str | None = None,
    from_path: str | None = None,
    entries: int | None = None,
) -> None:
    """Append ``fs.changed`` to the session's stream (nothing without a session)."""
    if session is None:
        return
    data = FsChangedData(
        operation=operation,
        path=path,
        size=size,
        sha256=sha256,
        from_path=from_path,
        entries=entries,
    )
    draft = EventDraft(type="fs.changed", source="client", data=data)
    await session.append([draft])


class ArchiveSpool:
    """An archive's bytes as they arrive, kept in an unnamed temporary file on the root's disk
    (nothing shows in the root), at most ``max_tar_bytes``."""

    def __init__(self, jail: Jail) -> None:
        self.limit = jail.limits.max_tar_bytes
        self.size = 0
        self.file: IO[bytes] = tempfile.TemporaryFile(dir=jail.root)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise FsError("too_large", "archive over the limit", None, self.limit)
        self.file.write(data)

    def close(self) -> None:
        self.file.close()
