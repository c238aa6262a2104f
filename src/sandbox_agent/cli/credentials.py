"""``sandbox-agent credentials``: the API keys and tokens the agents can use (``credentials.py``).

``extract`` shows what was found, keys redacted unless ``--reveal``; ``extract-env`` prints the
secrets themselves as ``NAME=value`` lines, for ``eval "$(sandbox-agent credentials extract-env
--export)"``: treat its output as a secret.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox_agent.cli.app import app, err_console, fail, group, print_json

if TYPE_CHECKING:
    from sandbox_agent.agents.credentials import Credential

#: The agents of ``agents.credentials.AGENT_PROVIDERS``, in its order, for the help text: importing
#: that module imports the whole agents package, which the other commands must not pay for
#: (``tests/test_cli_startup.py`` checks the two agree).
AGENTS = ("claude", "codex", "opencode", "amp", "acp:claude", "acp:codex", "acp:opencode")

credentials_app = group(
    "The API keys and tokens found for the agents (environment and agents' config files)."
)
app.add_typer(credentials_app, name="credentials")

HomeOption = Annotated[
    Path | None,
    typer.Option("-d", "--home", help="Look under this home directory (default: yours)."),
]
NoOAuthOption = Annotated[
    bool, typer.Option("--no-oauth", help="Skip OAuth tokens (API keys only).")
]


@credentials_app.command("extract")
def extract_command(
    agent: Annotated[
        str | None,
        typer.Option(
            "-a", "--agent", help=f"The token this agent would use ({', '.join(AGENTS)})."
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option("-p", "--provider", help="The token of this provider (anthropic, openai...)."),
    ] = None,
    home: HomeOption = None,
    no_oauth: NoOAuthOption = False,
    reveal: Annotated[
        bool, typer.Option("-r", "--reveal", help="Print keys in full (they are secrets).")
    ] = False,
) -> None:
    """Show the credentials found, as JSON {anthropic, openai, other} with keys redacted.

    With --agent or --provider: one token, on one line; redacted unless --reveal. Exits 1 when
    nothing is found for it."""
    if agent is not None and provider is not None:
        fail("--agent and --provider exclude each other")
    from sandbox_agent.agents.credentials import AGENT_PROVIDERS, extract_all

    found = extract_all(home, include_oauth=not no_oauth)
    if agent is None and provider is None:
        print_json(found.public(reveal))
        return
    chosen: Credential | None
    if agent is not None:
        if agent not in AGENT_PROVIDERS:
            fail(f"unknown agent {agent!r}: known are {', '.join(AGENT_PROVIDERS)}")
        chosen = found.for_agent(agent)
        what = f"agent {agent} (providers: {', '.join(AGENT_PROVIDERS[agent])})"
    else:
        assert provider is not None
        chosen = found.get(provider)
        what = f"provider {provider}"
    if chosen is None:
        have = ", ".join(found.providers()) or "none"
        fail(f"no credential found for {what}; providers found: {have}")
    if reveal:
        print(chosen.api_key)
    else:
        print(chosen.redacted)
        err_console().print(
            f"({chosen.provider}, from {chosen.source}; redacted: pass --reveal for the key)",
            highlight=False,
        )


@credentials_app.command("extract-env")
def extract_env_command(
    export: Annotated[
        bool, typer.Option("-e", "--export", help="Prefix each line with 'export '.")
    ] = False,
    home: HomeOption = None,
    no_oauth: NoOAuthOption = False,
) -> None:
    """Print NAME=value lines of every credential found. These are the secrets themselves.

    Anthropic: ANTHROPIC_API_KEY and CLAUDE_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN and
    ANTHROPIC_AUTH_TOKEN for an OAuth token); OpenAI: OPENAI_API_KEY and CODEX_API_KEY; others:
    <PROVIDER>_API_KEY. Values are shell-quoted."""
    from sandbox_agent.agents.credentials import env_lines, extract_all

    lines = env_lines(extract_all(home, include_oauth=not no_oauth))
    if not lines:
        err_console().print("no credentials found", highlight=False)
    prefix = "export " if export else ""
    for name, value in lines:
        print(f"{prefix}{name}={shlex.quote(value)}")
