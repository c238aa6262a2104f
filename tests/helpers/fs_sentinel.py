"""A sentinel around a filesystem API root: ``base/root`` is the root; ``base/outside`` and
``base/root2`` (a sibling whose name starts with the root's) hold secret files; the root holds
symlinks out (to a directory, to a file), in, to the sibling and a loop. ``snapshot`` records
everything outside the root (kind, size, mtime, content digest, directory listings) to check
that nothing there changed."""

from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SECRET = b"the secret outside the root"
E_ACUTE_NFC = unicodedata.normalize("NFC", "é")
E_ACUTE_NFD = unicodedata.normalize("NFD", "é")


def make_sentinel(base: Path) -> Path:
    """The sentinel tree under ``base``; the root's path."""
    outside, root, sibling = base / "outside", base / "root", base / "root2"
    for directory in (outside / "deep", root / "sub", sibling):
        directory.mkdir(parents=True)
    for secret in (outside / "secret.txt", outside / "deep" / "x", sibling / "secret.txt"):
        secret.write_bytes(SECRET)
    (base / "secret.txt").write_bytes(SECRET)
    (root / "inside.txt").write_bytes(b"inside")
    (root / "sub" / "f.txt").write_bytes(b"f")
    (root / f"{E_ACUTE_NFC}.txt").write_bytes(b"nfc")
    os.symlink("../outside", root / "link_out")
    os.symlink(str(outside / "secret.txt"), root / "link_out_file")
    os.symlink("sub", root / "link_in")
    os.symlink("../root2", root / "link_sibling")
    os.symlink("loop", root / "loop")
    return root


def snapshot(base: Path, skip: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``base`` but ``skip``: kind, size, mtime and content digest."""
    seen: dict[str, tuple[Any, ...]] = {}
    for directory, names, files in os.walk(base):
        if Path(directory) == skip:
            names[:] = []
            continue
        names[:] = [n for n in names if Path(directory, n) != skip]
        for name in [*names, *files]:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            seen[path] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
        seen[directory] = (sorted(os.listdir(directory)), os.lstat(directory).st_mtime_ns)
    return seen


NAMES = [
    "..",
    ".",
    "",
    "sub",
    "inside.txt",
    "link_out",
    "link_out_file",
    "link_in",
    "link_sibling",
    "loop",
    "outside",
    "secret.txt",
    "root2",
    "deep",
    "new",
    "a" * 300,
    "a\0b",
    f"{E_ACUTE_NFC}.txt",
    f"{E_ACUTE_NFD}.txt",
    "..\\..",
    "~",
]


@st.composite
def paths(draw: st.DrawFn) -> str:
    """Paths made of the sentinel's names, odd names (NUL, 300 characters, unicode forms,
    ``..``) and any text, absolute or not; ``{base}`` and ``{root}`` filled by ``fill``."""
    parts = draw(st.lists(st.sampled_from(NAMES) | st.text(min_size=1, max_size=8), max_size=6))
    prefix = draw(st.sampled_from(["", "/", "{base}/", "{root}/", "{base}/root2/", "//"]))
    return prefix + "/".join(parts)


def fill(path: str, base: Path) -> str:
    return path.replace("{base}", str(base)).replace("{root}", str(base / "root"))
