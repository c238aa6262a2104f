"""Skill sources for tests: skill directories on disk and git repositories holding them, made
with the system ``git`` (no network: a session takes them as ``file://`` URLs)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


def skill_text(name: str, description: str, body: str = "") -> str:
    """A ``SKILL.md``: YAML front matter with the name and description, then the body."""
    return f"---\nname: {name}\ndescription: {description}\n---\n\n{body or description}\n"


def write_skills(directory: Path, skills: Mapping[str, str]) -> Path:
    """``directory/<relative dir>/SKILL.md`` for each ``{relative dir: SKILL.md text}`` (``""``
    or ``"."``: the directory itself). Returns ``directory``."""
    for relative, text in skills.items():
        folder = directory / relative if relative not in ("", ".") else directory
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "SKILL.md").write_text(text)
    return directory


def git_skill_repo(
    path: Path, skills: Mapping[str, str], *, tag: str | None = None, bare: bool = True
) -> str:
    """A git repository at ``path`` with one commit of ``skills`` (as ``write_skills``), tagged
    ``tag`` if given; bare unless ``bare=False``. Returns its ``file://`` URL."""
    work = path.with_name(path.name + ".work") if bare else path
    work.mkdir(parents=True)
    write_skills(work, skills)
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "--quiet", "--initial-branch=main")
    git("add", "--all")
    git("commit", "--quiet", "--message", "skills")
    if tag is not None:
        git("tag", tag)
    if not bare:
        return path.resolve().as_uri()
    git("clone", "--quiet", "--bare", str(work), str(path), cwd=path.parent)
    return path.resolve().as_uri()
