"""Where a session may reach on disk: its directory lies inside the server's root, and the
files attached to its prompts inside its directory.

A path is resolved with its symlinks (``os.path.realpath``) before it is compared, so neither
``..`` nor a link (one the agent made, say) leads out. What is resolved is what is used: the
session row keeps its resolved directory, and the user item, ``prompt.queued`` and the adapter
get each attachment's resolved, absolute path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sandbox_agent.events import Attachment
from sandbox_agent.sessions.errors import InvalidSessionRequest, PathOutsideRoot


def resolve_inside(path: str, base: str) -> str | None:
    """The real path of ``path`` (relative to ``base`` unless absolute) when it lies inside
    ``base`` or is ``base`` itself, else None. ``InvalidSessionRequest`` for a NUL character."""
    if "\0" in path:
        raise InvalidSessionRequest(f"a path contains a NUL character: {path!r}")
    real_base = os.path.realpath(base)
    resolved = os.path.realpath(os.path.join(real_base, path))
    inside = resolved == real_base or resolved.startswith(real_base.rstrip(os.sep) + os.sep)
    return resolved if inside else None


def session_directory(directory: str | None, root: str | None) -> str | None:
    """The real path of a session's ``directory`` (relative to ``root``, default the working
    directory); None when it names none (the root then). ``PathOutsideRoot`` outside the root,
    ``InvalidSessionRequest`` when it is no directory."""
    if directory is None:
        return None
    base = root or os.getcwd()
    resolved = resolve_inside(directory, base)
    if resolved is None:
        raise PathOutsideRoot("directory", directory)
    if not os.path.isdir(resolved):
        raise InvalidSessionRequest(f"directory does not exist: {directory}")
    return resolved


def resolve_attachments(attachments: Sequence[Attachment], directory: str) -> list[Attachment]:
    """Each attachment with its real, absolute path (relative ones are relative to the session's
    ``directory``); ``PathOutsideRoot`` for the first one outside the directory."""
    resolved: list[Attachment] = []
    for attachment in attachments:
        path = resolve_inside(attachment.path, directory)
        if path is None:
            raise PathOutsideRoot("attachment", attachment.path)
        resolved.append(attachment.model_copy(update={"path": path}))
    return resolved
