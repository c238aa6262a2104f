"""A session's skills (``skills.sources[]``): fetch each source, find its skills, link them into
the session's directory. No HTTP here; ``install_skills`` runs in a worker thread.

Sources (upstream v0.1's shape, ``{type, source, skills?, ref?, subpath?}``):

- ``local``: a directory on the server's machine. A relative path is relative to the session's
  directory; an absolute one may lie anywhere (it is only read: what is written, the links, stays
  inside the session's directory).
- ``git``: any URL or path ``git clone`` takes, cloned with the system ``git`` (``--depth 1``,
  ``ref`` as a branch or tag) into ``<data dir>/skills-cache/<hash of URL and ref>``; a cached
  clone is updated with ``git pull --ff-only`` and cloned afresh when that fails. A ``file://``
  URL or a local path works offline; a network source with no network fails with git's own
  words. Protocols: file, git, http(s), ssh (``GIT_ALLOW_PROTOCOL``); git never prompts.
- ``github``: ``owner/repo``, the ``git`` source ``https://github.com/owner/repo.git`` (upstream
  downloads a zipball from api.github.com instead).

Discovery in ``<source>/<subpath>`` (the subpath must stay inside the source): the directory
itself when it holds a ``SKILL.md``, the directories of ``skills/`` that hold one, and its own
subdirectories that hold one (each once). A skill's name is its directory's name; the source's
own directory is named after the source (the subpath's last part, the repository's name, the
local directory's name). ``skills: [names]`` keeps only those names.

Each skill is linked (a symlink to its real directory; a copy where symlinks fail) into
``<session dir>/.agents/skills/<name>`` and into each of the agent's own skill directories
(``AgentSpec.skill_dirs``). An existing link to the same directory, or a directory holding a
``SKILL.md``, is kept (so installing again is harmless), a dangling link is replaced, anything
else is a conflict. A failed install removes the links it made.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sandbox_agent.sessions.errors import SessionError

logger = logging.getLogger(__name__)

SourceType = Literal["local", "git", "github"]
SkillsErrorKind = Literal[
    "invalid_config", "source_not_found", "missing_subpath", "no_skills_found",
    "skill_path_conflict", "git_failed",
]  # fmt: skip

#: Where every session gets its skills, whatever its agent.
COMMON_SKILL_DIR = ".agents/skills"
#: A session's sources at most.
MAX_SOURCES = 32
#: Seconds one ``git clone`` or ``git pull`` may take.
GIT_TIMEOUT_SECONDS = 120.0
#: ``owner/repo`` as GitHub allows them (a repository is never ``.`` or ``..``).
_GITHUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/(?!\.\.?$)[A-Za-z0-9_.-]+$")
# Serialises work on the clone cache: two sessions with one source clone it once.
_cache_lock = threading.Lock()


class SkillsError(SessionError):
    """A session's skills cannot be installed; ``kind`` says why (``git_failed``: ``detail``
    ends with git's own first ``fatal:`` line)."""

    def __init__(self, kind: SkillsErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class SkillSource:
    type: SourceType
    source: str
    #: Only these skill names; None: every skill found.
    skills: tuple[str, ...] | None = None
    ref: str | None = None
    subpath: str | None = None

    def label(self) -> str:
        return f"{self.source} ({self.type})"


@dataclass(frozen=True)
class InstalledSkill:
    """A skill a session got: its name, where it came from, its real directory (``path``), and
    the links made to it in the session's directory."""

    name: str
    type: SourceType
    source: str
    path: str
    links: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "source": self.source,
            "path": self.path,
            "links": list(self.links),
        }


def parse_skill_sources(config: Any) -> list[SkillSource]:
    """The sources of a session's ``skills`` (``{"sources": [...]}``, or None: none);
    ``SkillsError(invalid_config)`` for anything else."""
    if config is None:
        return []
    if not isinstance(config, dict) or not isinstance(config.get("sources", []), list):
        raise SkillsError("invalid_config", 'skills must be {"sources": [...]}')
    raw = config.get("sources", [])
    if len(raw) > MAX_SOURCES:
        raise SkillsError("invalid_config", f"more than {MAX_SOURCES} skill sources")
    return [_parse_source(item, index) for index, item in enumerate(raw)]


def _parse_source(item: Any, index: int) -> SkillSource:
    where = f"skills.sources[{index}]"
    if not isinstance(item, dict):
        raise SkillsError("invalid_config", f"{where} is not an object")
    kind = item.get("type")
    if kind not in ("local", "git", "github"):
        raise SkillsError("invalid_config", f"{where}.type must be local, git or github")
    source = item.get("source")
    if not isinstance(source, str) or not source.strip() or "\0" in source:
        raise SkillsError("invalid_config", f"{where}.source must be a non-empty string")
    if kind == "github" and not _GITHUB_NAME.match(source):
        raise SkillsError("invalid_config", f"{where}.source must be owner/repo: {source}")
    if kind == "git" and source.startswith("-"):
        raise SkillsError("invalid_config", f"{where}.source is not a repository: {source}")
    names = item.get("skills")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
    ):
        raise SkillsError("invalid_config", f"{where}.skills must be a list of names")
    ref = item.get("ref")
    if ref is not None and (not isinstance(ref, str) or not ref or ref.startswith("-")):
        raise SkillsError("invalid_config", f"{where}.ref must be a branch or tag name")
    subpath = item.get("subpath")
    if subpath is not None and (not isinstance(subpath, str) or "\0" in subpath):
        raise SkillsError("invalid_config", f"{where}.subpath must be a path")
    return SkillSource(
        type=kind,
        source=source,
        skills=tuple(names) if names is not None else None,
        ref=ref,
        subpath=subpath or None,
    )


def install_skills(
    config: Any, directory: str, skill_dirs: tuple[str, ...], cache_dir: Path
) -> tuple[list[InstalledSkill], list[str]]:
    """Fetch, discover and link every source of ``config`` into ``directory`` (the session's
    real directory): ``.agents/skills`` and each of ``skill_dirs``. Returns the skills and the
    links this call made (``remove_links`` undoes them). ``SkillsError`` when any source
    fails, with none of this call's links left behind."""
    sources = parse_skill_sources(config)
    if not sources:
        return [], []
    found: list[tuple[SkillSource, str, str]] = []  # (source, name, real skill directory)
    for source in sources:
        base, default_name = _fetch(source, directory, cache_dir)
        found.extend((source, name, path) for name, path in _discover(source, base, default_name))
    made: list[str] = []
    installed: list[InstalledSkill] = []
    try:
        for source, name, path in found:
            links = [
                _link(path, directory, rel, name, made) for rel in (COMMON_SKILL_DIR, *skill_dirs)
            ]
            installed.append(InstalledSkill(name, source.type, source.source, path, tuple(links)))
    except BaseException:
        remove_links(made)
        raise
    return installed, made


def remove_links(links: list[str]) -> None:
    """Remove links (or copies) ``install_skills`` made, newest first."""
    for link in reversed(links):
        _remove(link)


# -- fetching -------------------------------------------------------------------------------
def _fetch(source: SkillSource, directory: str, cache_dir: Path) -> tuple[str, str]:
    """The real directory to discover in (the subpath applied) and the name of a skill found
    right there."""
    if source.type == "local":
        root = os.path.realpath(os.path.join(directory, os.path.expanduser(source.source)))
        if not os.path.isdir(root):
            raise SkillsError(
                "source_not_found", f"skill source is not a directory: {source.source}"
            )
        name = os.path.basename(root)
    else:
        url = source.source
        if source.type == "github":
            url = f"https://github.com/{source.source}.git"
        elif "://" not in url and os.path.exists(os.path.join(directory, url)):
            # A repository by path: relative to the session's directory, like a local source.
            url = os.path.realpath(os.path.join(directory, url))
        root = _clone(url, source.ref, cache_dir)
        name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "skill"
    if source.subpath is None:
        return root, name
    base = os.path.realpath(os.path.join(root, source.subpath))
    if base != root and not base.startswith(root.rstrip(os.sep) + os.sep):
        raise SkillsError(
            "missing_subpath", f"subpath leads outside {source.label()}: {source.subpath}"
        )
    if not os.path.isdir(base):
        raise SkillsError(
            "missing_subpath", f"subpath not found in {source.label()}: {source.subpath}"
        )
    return base, os.path.basename(base)


def _clone(url: str, ref: str | None, cache_dir: Path) -> str:
    key = hashlib.sha256(f"{url}\0{ref or ''}".encode()).hexdigest()[:16]
    target = cache_dir / key
    with _cache_lock:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if (target / ".git").is_dir():
            try:
                _git(["pull", "--ff-only"], url, cwd=target)
                return os.path.realpath(target)
            except SkillsError as exc:
                logger.warning("skills cache of %s: pull failed, cloning again: %s", url, exc)
        # Cloned beside it, then renamed: never a half clone in the cache.
        fresh = cache_dir / f".{key}.{uuid.uuid4().hex[:8]}"
        args = ["clone", "--depth", "1", "--quiet"]
        if ref is not None:
            args += ["--branch", ref]
        try:
            _git([*args, "--", url, str(fresh)], url)
            if target.exists():
                shutil.rmtree(target)
            fresh.rename(target)
        finally:
            if fresh.exists():
                shutil.rmtree(fresh, ignore_errors=True)
    return os.path.realpath(target)


def _git(args: list[str], url: str, cwd: Path | None = None) -> None:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",  # no credential prompt on the server's terminal
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
        "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
    }
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
        )
    except FileNotFoundError as exc:
        raise SkillsError("git_failed", "git is not installed on the server") from exc
    except subprocess.TimeoutExpired as exc:
        raise SkillsError(
            "git_failed", f"git {args[0]} {url}: no answer in {GIT_TIMEOUT_SECONDS:g} s"
        ) from exc
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        # git's first "fatal:" says what failed; the lines after it are advice.
        fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
        why = (fatal or lines or [f"exit status {done.returncode}"])[0]
        raise SkillsError("git_failed", f"git {args[0]} {url} failed: {why}")


# -- discovery ------------------------------------------------------------------------------
def _discover(source: SkillSource, base: str, default_name: str) -> list[tuple[str, str]]:
    """(name, real directory) of each skill in ``base``, filtered by ``source.skills``."""
    found: dict[str, tuple[str, str]] = {}  # by real directory

    def add(name: str, path: str) -> None:
        real = os.path.realpath(path)
        if os.path.isfile(os.path.join(real, "SKILL.md")) and real not in found:
            found[real] = (name, real)

    add(default_name, base)
    for parent in (os.path.join(base, "skills"), base):
        if os.path.isdir(parent):
            for entry in sorted(os.listdir(parent)):
                if os.path.isdir(os.path.join(parent, entry)):
                    add(entry, os.path.join(parent, entry))
    skills = list(found.values())
    if source.skills is not None:
        wanted = set(source.skills)
        skills = [s for s in skills if s[0] in wanted]
    if not skills:
        where = source.label() + (f" subpath {source.subpath}" if source.subpath else "")
        suffix = f" (filter: {', '.join(source.skills)})" if source.skills is not None else ""
        raise SkillsError("no_skills_found", f"no skills found in {where}{suffix}")
    return skills


# -- linking --------------------------------------------------------------------------------
def _link(target: str, directory: str, rel: str, name: str, made: list[str]) -> str:
    """Link ``target`` at ``<directory>/<rel>/<name>`` (appended to ``made`` when new)."""
    real_parent = _make_dirs(os.path.realpath(directory), rel)
    dest = os.path.join(real_parent, name)
    if os.path.islink(dest):
        if os.path.realpath(dest) == target:
            return dest
        if os.path.exists(dest):
            raise SkillsError(
                "skill_path_conflict",
                f"skill path conflict: {rel}/{name} already links to {os.readlink(dest)}",
            )
        os.unlink(dest)  # dangling: replaced
    elif os.path.isdir(dest) and os.path.isfile(os.path.join(dest, "SKILL.md")):
        return dest  # a skill of that name is there already (a copy, or the user's own)
    elif os.path.lexists(dest):
        raise SkillsError(
            "skill_path_conflict", f"skill path conflict: {rel}/{name} exists and is no skill"
        )
    try:
        os.symlink(target, dest, target_is_directory=True)
    except OSError:
        shutil.copytree(target, dest, symlinks=True)
    made.append(dest)
    return dest


def _make_dirs(real_dir: str, rel: str) -> str:
    """``<real_dir>/<rel>`` made one part at a time, each checked first: a part the agent turned
    into a link must not lead a write out of the session's directory."""
    inside = real_dir.rstrip(os.sep) + os.sep
    current = real_dir
    for part in Path(rel).parts:
        current = os.path.realpath(os.path.join(current, part))
        if not current.startswith(inside):
            raise SkillsError(
                "skill_path_conflict", f"skill path conflict: {rel} leads outside the session"
            )
        if not os.path.isdir(current):
            if os.path.lexists(current):
                raise SkillsError(
                    "skill_path_conflict", f"skill path conflict: {rel} is not a directory"
                )
            os.mkdir(current)
    return current


def _remove(path: str) -> None:
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)
    except OSError:
        logger.warning("could not remove the skill link %s", path, exc_info=True)
