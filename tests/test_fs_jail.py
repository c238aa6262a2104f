"""The filesystem API's jail without HTTP (``sessions/files.py``): a hypothesis attack suite
against a sentinel root, then the promises one by one (write-then-rename, the limits, tar
checks refusing an archive with nothing unpacked).

The sentinel: ``base/root`` is the jail; ``base/outside`` and ``base/root2`` (a sibling whose
name starts with the root's) hold secret files; the root holds symlinks out (to a directory,
to a file) and in. After every example, nothing outside the root changed (names, kinds,
contents, mtimes) and no answer carried a secret or a path outside the root.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent.sessions.errors import FsError, InvalidSessionRequest, PathOutsideRoot
from sandbox_agent.sessions.files import FsLimits, Jail, PendingFile

from helpers.fs_sentinel import SECRET, fill, make_sentinel, paths, snapshot

ALLOWED = (PathOutsideRoot, FsError, InvalidSessionRequest)


@pytest.fixture(scope="module")
def playground() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fs-jail-") as place:
        yield Path(place)


# -- the attack suite ------------------------------------------------------------------------
OPERATIONS = ["entries", "stat", "read", "write", "mkdir", "delete", "move", "move_into"]


def attack(jail: Jail, operation: str, path: str, other: str, base: Path) -> list[str]:
    """Run one operation; the paths and bytes it answered (to check none is outside)."""
    answered: list[str] = []
    if operation == "entries":
        answered += [e.path for e in jail.entries(path)]
    elif operation == "stat":
        answered.append(jail.stat(path).path)
    elif operation == "read":
        file, _, real = jail.open_read(path)
        with file:
            assert SECRET not in file.read()
        answered.append(real)
    elif operation == "write":
        pending = jail.begin_write(path)
        pending.write(b"written")
        answered.append(pending.commit().path)
    elif operation == "mkdir":
        answered.append(jail.mkdir(path))
    elif operation == "delete":
        answered.append(jail.delete(path, recursive=True))
    elif operation == "move":
        answered += jail.move(path, other, overwrite=True)
    elif operation == "move_into":
        answered += jail.move("inside.txt", path, overwrite=True)
    return answered


def check_attack(playground: Path, operation: str, path: str, other: str) -> None:
    base = Path(tempfile.mkdtemp(dir=playground))
    try:
        root = make_sentinel(base)
        before = snapshot(base, root)
        jail = Jail(str(root), FsLimits(max_path_chars=1000))
        try:
            answered = attack(jail, operation, fill(path, base), fill(other, base), base)
        except ALLOWED:
            answered = []
        assert snapshot(base, root) == before, f"{operation} {path!r} {other!r} changed outside"
        real_root = os.path.realpath(root)
        for answer in answered:
            assert answer == real_root or answer.startswith(real_root + os.sep), answer
    finally:
        shutil.rmtree(base)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operation=st.sampled_from(OPERATIONS), path=paths(), other=paths())
def test_no_operation_reaches_outside_the_root(
    playground: Path, operation: str, path: str, other: str
) -> None:
    check_attack(playground, operation, path, other)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operation=st.sampled_from(OPERATIONS), path=paths(), other=paths())
def test_no_operation_reaches_outside_the_root_long(
    playground: Path, operation: str, path: str, other: str
) -> None:
    check_attack(playground, operation, path, other)


@st.composite
def tar_members(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """(kind, name, link target) triples."""
    member = st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink"]), paths(), paths())
    return draw(st.lists(member, min_size=1, max_size=5))


def make_tar(members: list[tuple[str, str, str]], base: Path, compress: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tar:
        for kind, name, target in members:
            info = tarfile.TarInfo(fill(name, base).replace("\0", "") or "x")
            if kind == "file":
                info.size = 5
                tar.addfile(info, io.BytesIO(b"tared"))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}.get(
                kind, tarfile.LNKTYPE
            )
            info.linkname = fill(target, base).replace("\0", "")
            tar.addfile(info)
    return buffer.getvalue()


def check_tar(playground: Path, members: list[tuple[str, str, str]], compress: bool) -> None:
    base = Path(tempfile.mkdtemp(dir=playground))
    try:
        root = make_sentinel(base)
        before = snapshot(base, root)
        root_before = snapshot(root, root / "nothing")
        jail = Jail(str(root))
        archive = io.BytesIO(make_tar(members, base, compress))
        try:
            unpacked = jail.unpack(archive, "sub")
        except PathOutsideRoot:
            # Refused: nothing unpacked at all.
            assert snapshot(root, root / "nothing") == root_before
            unpacked = None
        except (FsError, InvalidSessionRequest):
            unpacked = None
        assert snapshot(base, root) == before, f"{members} changed outside the root"
        real_root = os.path.realpath(root)
        for answer in unpacked.paths if unpacked else []:
            assert answer.startswith(real_root + os.sep), answer
        for directory, _, files in os.walk(root):
            for name in files:  # nothing unpacked reads a secret through a link
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    assert SECRET not in Path(path).read_bytes(), path
    finally:
        shutil.rmtree(base)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=tar_members(), compress=st.booleans())
def test_no_tar_entry_reaches_outside_the_root(
    playground: Path, members: list[tuple[str, str, str]], compress: bool
) -> None:
    check_tar(playground, members, compress)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=tar_members(), compress=st.booleans())
def test_no_tar_entry_reaches_outside_the_root_long(
    playground: Path, members: list[tuple[str, str, str]], compress: bool
) -> None:
    check_tar(playground, members, compress)


# -- the attacks named in the issue, each once ---------------------------------------------
@pytest.fixture
def sentinel(tmp_path: Path) -> tuple[Jail, Path]:
    return Jail(str(make_sentinel(tmp_path))), tmp_path


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "{base}/outside/secret.txt",
        "link_out/secret.txt",
        "link_out_file",
        "link_sibling/secret.txt",
        "{base}/root2/secret.txt",
        "sub/../../secret.txt",
    ],
)
def test_reading_outside_is_refused(sentinel: tuple[Jail, Path], path: str) -> None:
    jail, base = sentinel
    with pytest.raises(PathOutsideRoot):
        jail.open_read(fill(path, base))


@pytest.mark.parametrize("path", ["link_out/new.txt", "../new.txt", "link_out_file"])
def test_writing_outside_is_refused_and_creates_nothing(
    sentinel: tuple[Jail, Path], path: str
) -> None:
    jail, base = sentinel
    before = snapshot(base, base / "root")
    with pytest.raises(PathOutsideRoot):
        jail.begin_write(path)
    assert snapshot(base, base / "root") == before


def test_a_symlink_inside_is_followed_and_deleting_a_link_out_removes_only_the_link(
    sentinel: tuple[Jail, Path],
) -> None:
    jail, base = sentinel
    file, _, real = jail.open_read("link_in/f.txt")
    with file:
        assert file.read() == b"f"
    assert real == str(base / "root" / "sub" / "f.txt")
    assert jail.delete("link_out") == str(base / "root" / "link_out")
    assert (base / "outside" / "secret.txt").read_bytes() == SECRET
    assert not (base / "root" / "link_out").exists()


def test_a_nul_and_a_path_over_the_limit_are_bad_requests(tmp_path: Path) -> None:
    jail = Jail(str(tmp_path), FsLimits(max_path_chars=10))
    with pytest.raises(InvalidSessionRequest, match="NUL"):
        jail.stat("a\0b")
    with pytest.raises(InvalidSessionRequest, match="longer than 10"):
        jail.stat("a" * 11)


def test_the_root_cannot_be_deleted_or_moved(sentinel: tuple[Jail, Path]) -> None:
    jail, base = sentinel
    with pytest.raises(FsError):
        jail.delete(".", recursive=True)
    with pytest.raises(FsError):
        jail.move(".", "sub/x")
    assert (base / "root" / "inside.txt").exists()


# -- writes land whole ---------------------------------------------------------------------
def test_a_write_shows_nothing_at_its_path_until_commit_and_abort_leaves_nothing(
    tmp_path: Path,
) -> None:
    jail = Jail(str(tmp_path))
    (tmp_path / "f").write_bytes(b"old")
    pending = jail.begin_write("f")
    pending.write(b"new content")
    assert (tmp_path / "f").read_bytes() == b"old"
    written = pending.commit()
    assert (tmp_path / "f").read_bytes() == b"new content"
    assert (written.size, written.sha256) == (11, hashlib.sha256(b"new content").hexdigest())
    aborted = jail.begin_write("g")
    aborted.write(b"half")
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_file_over_the_limit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    jail = Jail(str(tmp_path), FsLimits(max_file_bytes=10))
    pending = jail.begin_write("big")
    pending.write(b"0123456789")
    with pytest.raises(FsError) as refused:
        pending.write(b"!")
    assert (refused.value.kind, refused.value.limit) == ("too_large", 10)
    assert list(tmp_path.iterdir()) == []


def test_an_overwrite_keeps_the_files_mode(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o750)
    pending: PendingFile = Jail(str(tmp_path)).begin_write("run.sh")
    pending.write(b"#!/bin/sh\necho\n")
    pending.commit()
    assert (tmp_path / "run.sh").stat().st_mode & 0o777 == 0o750


# -- archives ------------------------------------------------------------------------------
def _tar(entries: list[tuple[str, bytes]], compress: bool = False) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("compress", [False, True])
def test_an_archive_unpacks_plain_or_gzip(tmp_path: Path, compress: bool) -> None:
    unpacked = Jail(str(tmp_path)).unpack(_tar([("a/b.txt", b"b"), ("c", b"cc")], compress), "d")
    assert unpacked.paths == [str(tmp_path / "d" / "a" / "b.txt"), str(tmp_path / "d" / "c")]
    assert (tmp_path / "d" / "c").read_bytes() == b"cc"


def test_one_bad_entry_refuses_the_archive_with_nothing_unpacked(tmp_path: Path) -> None:
    with pytest.raises(PathOutsideRoot):
        Jail(str(tmp_path)).unpack(_tar([("fine.txt", b"x"), ("../escape.txt", b"x")]), ".")
    assert list(tmp_path.iterdir()) == []


def test_the_archive_limits(tmp_path: Path) -> None:
    few = Jail(str(tmp_path), FsLimits(max_tar_entries=2))
    with pytest.raises(FsError, match="too many entries"):
        few.unpack(_tar([("a", b""), ("b", b""), ("c", b"")]), ".")
    small = Jail(str(tmp_path), FsLimits(max_tar_bytes=20_000))
    with pytest.raises(FsError, match="archive over the limit"):
        small.unpack(_tar([("a", b"0" * 25_000)]), ".")
    # A small gzip archive that would unpack over the limit: refused before unpacking.
    with pytest.raises(FsError, match="unpacks over the limit"):
        small.unpack(_tar([("a", b"0" * 10_000), ("b", b"0" * 10_001)], compress=True), ".")
    assert list(tmp_path.iterdir()) == []


def test_more_than_1024_paths_are_truncated(tmp_path: Path) -> None:
    unpacked = Jail(str(tmp_path)).unpack(_tar([(f"f{i}", b"") for i in range(1030)]), ".")
    assert (len(unpacked.paths), unpacked.count, unpacked.truncated) == (1024, 1030, True)


def test_a_hard_link_to_a_directory_is_denied(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo("d")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        link = tarfile.TarInfo("h")
        link.type, link.linkname = tarfile.LNKTYPE, "d"
        tar.addfile(link)
    buffer.seek(0)
    with pytest.raises(FsError) as denied:
        Jail(str(tmp_path)).unpack(buffer, ".")
    assert denied.value.kind == "denied"
