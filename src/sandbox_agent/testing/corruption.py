"""Damage a copy of a SQLite store the way a bad disk or a bad restore would, to test that the
damage is reported (``StoreCorrupt``, ``replay --check``, ``--deep``), never served as a
shorter stream: ``copy_sqlite`` (a consistent copy of a store, in one file), ``delete_events``
(a gap below a session's last sequence: deterministic), ``flip_bytes`` in the pages of an index
or table (``pages_of``), as a failing disk would.

Only ever on a copy: the original stays as it was.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path


def copy_sqlite(source: Path, target: Path) -> Path:
    """A consistent copy of the SQLite store at ``source`` (its WAL included) as one file at
    ``target``, through SQLite's backup API. Returns ``target``."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # no WAL: every page is in the file
    return target


def delete_events(path: Path, session_id: str, first: int, last: int) -> int:
    """Delete the session's events ``first..last`` behind the store's back (its row still
    says they exist): a gap. Returns how many went."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        cursor = db.execute(
            "DELETE FROM events WHERE session_id = ? AND sequence BETWEEN ? AND ?",
            (session_id, first, last),
        )
        return cursor.rowcount


def index_on(path: Path, table: str, columns: Sequence[str]) -> str:
    """The name of the index of ``table`` on exactly ``columns`` (in that order)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
            )
        ]
        for name in names:
            found = [row[2] for row in db.execute(f'PRAGMA index_info("{name}")')]
            if found == list(columns):
                return str(name)
    raise LookupError(f"no index of {table} on {', '.join(columns)}")


def pages_of(path: Path, name: str, page_type: str = "leaf") -> list[int]:
    """The numbers (from 1) of the ``page_type`` pages of table or index ``name``, ascending
    (SQLite's ``dbstat``)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [
            row[0]
            for row in db.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = ? ORDER BY pageno",
                (name, page_type),
            )
        ]


def flip_bytes(path: Path, pages: Sequence[int], count: int, seed: int) -> list[int]:
    """Invert ``count`` bytes of the file, drawn with ``seed`` from the last quarter of each of
    ``pages`` in turn: where a b-tree page keeps its cells, so each flip damages stored data,
    not free space. Returns the offsets flipped."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    rng = random.Random(seed)
    data = bytearray(path.read_bytes())
    offsets = []
    for i in range(count):
        start = (pages[i % len(pages)] - 1) * page_size
        offset = start + rng.randrange(page_size * 3 // 4, page_size)
        data[offset] ^= 0xFF
        offsets.append(offset)
    path.write_bytes(bytes(data))
    return offsets


__all__ = ["copy_sqlite", "delete_events", "flip_bytes", "index_on", "pages_of"]
