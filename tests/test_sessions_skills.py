"""A session's skills (issue 16): ``skills.sources[]`` at creation, local directories and git
repositories (made here with the system git, taken as ``file://`` URLs), discovered as upstream
v0.1 does and linked into the session's ``.agents/skills/<name>`` (and the agent's own skill
directory), reported in ``SessionInfo.installedSkills`` and ``session.started``; every failure a
400 problem that leaves no session and none of its links behind.

Through a real server process (the mock agent; its network goes to a dead proxy on 127.0.0.1,
so a github source fails as it would offline), and in process for the agents' own directories.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.agents.catalog import SPECS
from sandbox_agent.api import SkillsConfig, SkillSource
from sandbox_agent.sdk import SandboxAgent, SandboxAgentError
from sandbox_agent.sessions import SkillsError
from sandbox_agent.sessions.skills import install_skills
from sandbox_agent.testing.server import ServerProcess, events_of, problem, running
from sandbox_agent.testing.skills import git_skill_repo, skill_text, write_skills

_ids = itertools.count(1)


@dataclass
class Setup:
    server: ServerProcess
    root: Path
    sources: Path
    outside: Path
    cache: Path

    def workspace(self) -> Path:
        path = self.root / f"ws{next(_ids)}"
        path.mkdir()
        return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("skills").resolve()
    root, sources, outside = tmp / "root", tmp / "sources", tmp / "outside"
    for directory in (root, sources, outside):
        directory.mkdir()
    env = {
        "SANDBOX_AGENT_DATA_DIR": str(tmp / "data"),
        # No way out: git's HTTPS goes to a closed port on 127.0.0.1.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
    }
    args = ["--no-token", "--root", str(root)]
    with running(f"sqlite:///{tmp / 's.db'}", tmp / "server.log", args=args, env=env) as server:
        yield Setup(server, root, sources, outside, tmp / "data" / "skills-cache")


def _create(client: httpx.Client, session_id: str, ws: Path, *sources: dict[str, Any]) -> Any:
    body = {"agent": "mock", "directory": str(ws), "skills": {"sources": list(sources)}}
    return client.post(f"/v1/sessions/{session_id}", json=body)


def _info(client: httpx.Client, session_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()
    return info


def _linked(ws: Path) -> dict[str, str]:
    """``{name: real target}`` of ``ws/.agents/skills``."""
    folder = ws / ".agents" / "skills"
    if not folder.exists():
        return {}
    return {p.name: os.path.realpath(p) for p in sorted(folder.iterdir())}


def _refused(
    setup: Setup, response: httpx.Response, name: str, session_id: str, ws: Path
) -> dict[str, Any]:
    """A 400 ``name`` problem, and no session left behind."""
    body = problem(response, 400, name)
    with setup.server.client() as client:
        assert client.get(f"/v1/sessions/{session_id}").status_code == 404
    return body


# -- local sources ------------------------------------------------------------------------------
def test_a_local_source_is_linked_and_reported(setup: Setup) -> None:
    source = write_skills(
        setup.sources / "local",
        {"skills/review": skill_text("review", "Reviews code")},
    )
    (source / "notes").mkdir()  # no SKILL.md: not a skill
    ws = setup.workspace()
    with setup.server.client() as client:
        response = _create(client, "local", ws, {"type": "local", "source": str(source)})
        assert response.status_code == 200, response.text
        info = _info(client, "local")
        listed = client.get("/v1/sessions").json()["sessions"]
        started = events_of(client, "local")[0]
    target = str(source / "skills" / "review")
    assert _linked(ws) == {"review": target}
    assert (ws / ".agents" / "skills" / "review").is_symlink()
    assert (ws / ".agents" / "skills" / "review" / "SKILL.md").read_text().startswith("---")
    link = str(ws / ".agents" / "skills" / "review")
    expected = {"name": "review", "type": "local", "source": str(source), "path": target,
                "links": [link]}  # fmt: skip
    assert info["installedSkills"] == [expected]
    assert info["skills"] == {"sources": [{"type": "local", "source": str(source)}]}
    assert [s["installedSkills"] for s in listed if s["sessionId"] == "local"] == [[expected]]
    assert started["type"] == "session.started"
    skills = [{"name": "review", "source": str(source), "path": target}]
    assert started["data"]["metadata"]["skills"] == skills


def test_a_relative_local_source_is_relative_to_the_session_directory(setup: Setup) -> None:
    ws = setup.workspace()
    write_skills(ws / "vendor", {"lint": skill_text("lint", "Lints")})
    with setup.server.client() as client:
        response = _create(client, "relative", ws, {"type": "local", "source": "vendor"})
        assert response.status_code == 200, response.text
    assert _linked(ws) == {"lint": str(ws / "vendor" / "lint")}


def test_discovery_finds_the_root_skills_and_children_once_and_filters_by_name(
    setup: Setup,
) -> None:
    source = write_skills(
        setup.sources / "bundle",
        {
            ".": skill_text("bundle", "The source itself"),
            "skills/alpha": skill_text("alpha", "A"),
            "skills/beta": skill_text("beta", "B"),
            "gamma": skill_text("gamma", "C"),
            "deep/nested/delta": skill_text("delta", "Too deep: not found"),
        },
    )
    ws_all, ws_some = setup.workspace(), setup.workspace()
    with setup.server.client() as client:
        response = _create(client, "all", ws_all, {"type": "local", "source": str(source)})
        assert response.status_code == 200, response.text
        picked = {"type": "local", "source": str(source), "skills": ["beta", "gamma"]}
        response = _create(client, "some", ws_some, picked)
        assert response.status_code == 200, response.text
    assert _linked(ws_all) == {
        "alpha": str(source / "skills" / "alpha"),
        "beta": str(source / "skills" / "beta"),
        "bundle": str(source),
        "gamma": str(source / "gamma"),
    }
    assert _linked(ws_some) == {
        "beta": str(source / "skills" / "beta"),
        "gamma": str(source / "gamma"),
    }


def test_a_subpath_narrows_the_search(setup: Setup) -> None:
    source = write_skills(
        setup.sources / "mono",
        {"packages/tools/fmt": skill_text("fmt", "F"), "top": skill_text("top", "T")},
    )
    ws = setup.workspace()
    with setup.server.client() as client:
        sub = {"type": "local", "source": str(source), "subpath": "packages/tools"}
        response = _create(client, "sub", ws, sub)
        assert response.status_code == 200, response.text
    assert _linked(ws) == {"fmt": str(source / "packages" / "tools" / "fmt")}


# -- git sources --------------------------------------------------------------------------------
def test_a_git_source_is_cloned_into_the_cache_and_linked(setup: Setup, tmp_path: Path) -> None:
    url = git_skill_repo(
        tmp_path / "team-skills.git",
        {"skills/deploy": skill_text("deploy", "Deploys"), ".": skill_text("x", "Root")},
        tag="v1",
    )
    ws, again = setup.workspace(), setup.workspace()
    with setup.server.client() as client:
        response = _create(client, "git", ws, {"type": "git", "source": url, "ref": "v1"})
        assert response.status_code == 200, response.text
        # A second session of the same source uses the cached clone (updated, not re-cloned).
        response = _create(client, "git2", again, {"type": "git", "source": url, "ref": "v1"})
        assert response.status_code == 200, response.text
        info = _info(client, "git")
    linked = _linked(ws)
    assert sorted(linked) == ["deploy", "team-skills"]  # the root skill takes the repo's name
    clone = Path(linked["team-skills"])
    assert clone.parent == setup.cache and (clone / ".git").is_dir()
    assert linked["deploy"] == str(clone / "skills" / "deploy")
    assert (ws / ".agents/skills/deploy/SKILL.md").read_text() == skill_text("deploy", "Deploys")
    assert _linked(again) == linked
    assert {s["type"] for s in info["installedSkills"]} == {"git"}
    assert [p.name for p in setup.cache.iterdir() if p.name.startswith(".")] == []


def test_a_git_source_that_cannot_be_cloned_is_refused_with_gits_words(
    setup: Setup, tmp_path: Path
) -> None:
    ws = setup.workspace()
    missing = (tmp_path / "missing.git").as_uri()
    with setup.server.client() as client:
        response = _create(client, "nogit", ws, {"type": "git", "source": missing})
        body = _refused(setup, response, "git_failed", "nogit", ws)
        assert body["detail"].startswith(f"git clone {missing} failed: fatal: ")
        assert "missing.git" in body["detail"].split("failed:")[1]
        url = git_skill_repo(tmp_path / "r.git", {"s": skill_text("s", "S")})
        response = _create(client, "noref", ws, {"type": "git", "source": url, "ref": "nope"})
        body = _refused(setup, response, "git_failed", "noref", ws)
        assert "nope" in body["detail"]
    assert _linked(ws) == {}


def test_a_github_source_without_a_network_fails_clearly(setup: Setup) -> None:
    ws = setup.workspace()
    with setup.server.client() as client:
        source = {"type": "github", "source": "example/skills"}
        response = _create(client, "github", ws, source)
        body = _refused(setup, response, "git_failed", "github", ws)
        url = "https://github.com/example/skills.git"
        assert body["detail"].startswith(f"git clone {url} failed: fatal: ")
        assert "127.0.0.1" in body["detail"]  # the proxy that stands for no network
        response = _create(client, "github2", ws, {"type": "github", "source": "../etc"})
        problem(response, 400, "invalid_request")


# -- errors -------------------------------------------------------------------------------------
def test_no_skills_found_is_refused(setup: Setup) -> None:
    empty = setup.sources / "empty"
    (empty / "docs").mkdir(parents=True)
    source = write_skills(setup.sources / "one", {"only": skill_text("only", "O")})
    ws = setup.workspace()
    with setup.server.client() as client:
        response = _create(client, "none", ws, {"type": "local", "source": str(empty)})
        body = _refused(setup, response, "no_skills_found", "none", ws)
        assert body["detail"] == f"no skills found in {empty} (local)"
        picked = {"type": "local", "source": str(source), "skills": ["other"]}
        response = _create(client, "filtered", ws, picked)
        body = _refused(setup, response, "no_skills_found", "filtered", ws)
        assert body["detail"].endswith("(filter: other)")


def test_a_missing_or_escaping_subpath_and_a_missing_source_are_refused(setup: Setup) -> None:
    source = write_skills(setup.sources / "sp", {"a": skill_text("a", "A")})
    write_skills(setup.outside / "stolen", {".": skill_text("stolen", "Outside the source")})
    ws = setup.workspace()
    with setup.server.client() as client:
        for session_id, subpath in (("sp1", "nowhere"), ("sp2", "../../outside/stolen")):
            sub = {"type": "local", "source": str(source), "subpath": subpath}
            response = _create(client, session_id, ws, sub)
            body = _refused(setup, response, "missing_subpath", session_id, ws)
            assert subpath in body["detail"]
        gone = {"type": "local", "source": str(setup.sources / "gone")}
        response = _create(client, "gone", ws, gone)
        _refused(setup, response, "source_not_found", "gone", ws)
        response = _create(client, "badtype", ws, {"type": "svn", "source": "x"})
        problem(response, 400, "invalid_request")
    assert _linked(ws) == {}


def test_a_conflict_is_refused_and_leaves_none_of_the_requests_links(setup: Setup) -> None:
    first = write_skills(setup.sources / "c1", {"fmt": skill_text("fmt", "1"), "aa": "x"})
    second = write_skills(setup.sources / "c2", {"fmt": skill_text("fmt", "2")})
    ws = setup.workspace()
    with setup.server.client() as client:
        # Two sources with a skill of one name: the second link conflicts with the first.
        response = _create(
            client, "clash", ws,
            {"type": "local", "source": str(first)}, {"type": "local", "source": str(second)},
        )  # fmt: skip
        body = _refused(setup, response, "skill_path_conflict", "clash", ws)
        assert "fmt" in body["detail"]
        assert _linked(ws) == {}  # aa and the first fmt were removed again
        # A file where the link would go.
        (ws / ".agents" / "skills" / "fmt").write_text("mine")
        response = _create(client, "file", ws, {"type": "local", "source": str(second)})
        _refused(setup, response, "skill_path_conflict", "file", ws)
        assert (ws / ".agents" / "skills" / "fmt").read_text() == "mine"


def test_links_never_lead_out_of_the_session_directory(setup: Setup) -> None:
    source = write_skills(setup.sources / "jail", {"j": skill_text("j", "J")})
    ws = setup.workspace()
    (ws / ".agents").symlink_to(setup.outside)
    with setup.server.client() as client:
        response = _create(client, "jail", ws, {"type": "local", "source": str(source)})
        body = _refused(setup, response, "skill_path_conflict", "jail", ws)
        assert "outside" in body["detail"]
    assert not (setup.outside / "skills").exists()


def test_installing_again_keeps_the_same_links(setup: Setup) -> None:
    source = write_skills(setup.sources / "again", {"same": skill_text("same", "S")})
    ws = setup.workspace()
    # A dangling link of that name (a skill since removed) is replaced.
    (ws / ".agents" / "skills").mkdir(parents=True)
    (ws / ".agents" / "skills" / "same").symlink_to(setup.sources / "removed")
    with setup.server.client() as client:
        for session_id in ("again1", "again2"):
            response = _create(client, session_id, ws, {"type": "local", "source": str(source)})
            assert response.status_code == 200, response.text
            info = _info(client, session_id)
            assert [s["links"] for s in info["installedSkills"]] == [
                [str(ws / ".agents/skills/same")]
            ]
    assert _linked(ws) == {"same": str(source / "same")}


# -- the SDK -------------------------------------------------------------------------------------
async def test_the_sdk_creates_a_session_with_typed_skill_sources(setup: Setup) -> None:
    source = write_skills(setup.sources / "sdk", {"typed": skill_text("typed", "T")})
    ws = setup.workspace()
    skills = SkillsConfig(sources=[SkillSource(type="local", source=str(source))])
    async with await SandboxAgent.connect(setup.server.url) as sdk:
        session = await sdk.create_session("sdk", agent="mock", directory=str(ws), skills=skills)
        assert session.record.init["skills"] == {
            "sources": [{"type": "local", "source": str(source)}]
        }
        with pytest.raises(SandboxAgentError) as caught:
            bad = {"sources": [{"type": "local", "source": str(setup.sources / "nope")}]}
            await sdk.create_session("sdk-bad", agent="mock", directory=str(ws), skills=bad)
        assert (caught.value.status, caught.value.name) == (400, "source_not_found")
    assert _linked(ws) == {"typed": str(source / "typed")}


# -- the agents' own skill directories ------------------------------------------------------------
@pytest.mark.parametrize(
    ("agent", "own"),
    [
        ("claude", [".claude/skills"]),
        ("acp:claude", [".claude/skills"]),
        ("opencode", [".opencode/skill"]),
        ("acp:opencode", [".opencode/skill"]),
        ("codex", []),  # codex and amp read .agents/skills
        ("amp", []),
        ("mock", []),
    ],
)
def test_each_agent_gets_its_own_skill_directory(
    agent: str, own: list[str], tmp_path: Path
) -> None:
    source = write_skills(tmp_path / "src", {"tidy": skill_text("tidy", "T")})
    ws = tmp_path / "ws"
    ws.mkdir()
    config = {"sources": [{"type": "local", "source": str(source)}]}
    skills, made = install_skills(config, str(ws), SPECS[agent].skill_dirs, tmp_path / "cache")
    expected = [str(ws / rel / "tidy") for rel in (".agents/skills", *own)]
    assert [s.links for s in skills] == [tuple(expected)] and made == expected
    assert all(os.path.realpath(p) == str(source / "tidy") for p in expected)


def test_an_invalid_skills_config_is_refused_in_process(tmp_path: Path) -> None:
    with pytest.raises(SkillsError) as caught:
        install_skills({"sources": "x"}, str(tmp_path), (), tmp_path / "cache")
    assert caught.value.kind == "invalid_config"


def test_a_skill_is_copied_where_no_symlink_can_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_skills(tmp_path / "src", {"copied": skill_text("copied", "C")})
    (source / "copied" / "helper.sh").write_text("echo hi\n")
    ws = tmp_path / "ws"
    ws.mkdir()

    def no_symlinks(*args: Any, **kwargs: Any) -> None:
        raise OSError(1, "Operation not permitted")  # a file system without symlinks

    monkeypatch.setattr(os, "symlink", no_symlinks)
    config = {"sources": [{"type": "local", "source": str(source)}]}
    skills, made = install_skills(config, str(ws), (".claude/skills",), tmp_path / "cache")
    for link in made:
        assert not os.path.islink(link)
        assert (Path(link) / "helper.sh").read_text() == "echo hi\n"
    # Installing again keeps the copies (a directory holding a SKILL.md).
    again, made_again = install_skills(config, str(ws), (".claude/skills",), tmp_path / "cache")
    assert made_again == [] and again[0].links == skills[0].links
