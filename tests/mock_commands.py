"""The mock agent's commands and the event kinds each one must produce, as upstream's v0.1 mock
does: one line per event (``agent_contract.summary``), after the prompt's own opening lines.

Shared by the adapter tests (``test_agents_mock.py``) and the end-to-end tests through a real
server (``test_server_mock_commands.py``), so that both prove the same table.
"""

from __future__ import annotations


def opening(n: int = 1) -> list[str]:
    """What the session layer records for the n-th prompt: turn.started and the user item."""
    return ["turn.started", f"item.started itm_{n}", f"item.completed itm_{n}"]


def message(item_id: str) -> list[str]:
    """A plain message: started, the normaliser's synthetic full-text delta, completed."""
    return [f"item.started {item_id}", f"item.delta {item_id}", f"item.completed {item_id}"]


def pair(item_id: str) -> list[str]:
    return [f"item.started {item_id}", f"item.completed {item_id}"]


def tool(p: str = "mock_1") -> list[str]:
    return pair(f"{p}_tool_call") + pair(f"{p}_tool_result")


def rich(p: str = "mock_1") -> list[str]:
    item = f"{p}_assistant_rich"
    return [f"item.started {item}", *[f"item.delta {item}"] * 2, f"item.completed {item}"]


def markdown(p: str = "mock_1") -> list[str]:
    item = f"{p}_markdown"
    return [f"item.started {item}", *[f"item.delta {item}"] * 8, f"item.completed {item}"]


TWO_PERMISSIONS = [
    "permission.requested mock_1_permission",
    "permission.requested mock_1_permission_denied",
]
TWO_QUESTIONS = ["question.requested mock_1_question", "question.requested mock_1_question_reject"]
DEMO = [
    *message("mock_1_marker_1"),
    *pair("mock_1_system"),
    *message("mock_1_marker_2"),
    *rich(),
    *message("mock_1_marker_3"),
    *pair("mock_1_status"),
    *message("mock_1_marker_4"),
    *markdown(),
    *message("mock_1_marker_5"),
    *tool(),
    *message("mock_1_marker_6"),
    *message("mock_1_image"),
    *message("mock_1_marker_7"),
    *pair("mock_1_unknown"),
    *message("mock_1_marker_8"),
    *TWO_PERMISSIONS,
    *message("mock_1_marker_9"),
    *TWO_QUESTIONS,
    *message("mock_1_marker_10"),
    "error",
    "agent.unparsed",
    "turn.ended",
]
BASH = (
    "Use the bash tool to run `ls` in the current directory. Do not answer without using the tool."
)
END = ["turn.ended"]

COMMANDS = [
    ("Reply with exactly the single word OK.", [*message("mock_1_ok"), *END]),
    ("reply with exactly the word first.", [*message("mock_1_first"), *END]),
    ("Reply with exactly the word SECOND.", [*message("mock_1_second"), *END]),
    ("Answer briefly and include your reasoning.", [*rich(), *END]),
    ("Provide a short status update.", [*pair("mock_1_status"), *END]),
    (
        "List files in the current directory using available tools.",
        ["permission.requested mock_1_permission"],
    ),
    (BASH, ["permission.requested mock_1_permission", *tool(), *END]),
    (
        "Use the AskUserQuestion tool to ask exactly one yes/no question, then wait for a reply. "
        "Do not answer yourself.",
        ["question.requested mock_1_question"],
    ),
    (
        "Call the AskUserQuestion tool with exactly one yes/no question and wait for a reply. "
        "Do not answer yourself.",
        ["question.requested mock_1_question"],
    ),
    ("help", [*message("mock_1_help"), *END]),
    ("demo", DEMO),
    ("markdown", [*markdown(), *END]),
    ("tool", [*tool(), *END]),
    ("tools", [*tool(), *END]),
    ("Tooling", [*tool(), *END]),
    ("status", [*pair("mock_1_status"), *END]),
    ("image", [*message("mock_1_image"), *END]),
    ("unknown", [*pair("mock_1_unknown"), *END]),
    ("permission", TWO_PERMISSIONS),
    ("permissions", TWO_PERMISSIONS),
    ("question", TWO_QUESTIONS),
    ("questions", TWO_QUESTIONS),
    ("error", ["error", "agent.unparsed", *END]),
    ("unparsed", ["agent.unparsed", *END]),
    ("end", ["turn.ended", "session.ended"]),
    ("ended", ["turn.ended", "session.ended"]),
    ("session.end", ["turn.ended", "session.ended"]),
    ("echo hello there", [*message("mock_1_echo"), *END]),
    ("say", [*message("mock_1_echo"), *END]),
    ("What is a mock?", [*message("mock_1_reply"), *END]),
    ("   ", END),
]
