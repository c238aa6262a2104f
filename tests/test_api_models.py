"""The wire models (``sandbox_agent.api``) against the layers they mirror."""

from __future__ import annotations

from sandbox_agent.agents import AgentCapabilities as AdapterCapabilities
from sandbox_agent.api import AgentCapabilities, MessageRequest
from sandbox_agent.events import Attachment


def test_the_wire_capabilities_are_the_adapters_flags_one_for_one() -> None:
    # Two models by necessity (the wire layer does not import the agents): one set of flags.
    assert list(AgentCapabilities.model_fields) == list(AdapterCapabilities.model_fields)
    every = AdapterCapabilities(**dict.fromkeys(AdapterCapabilities.model_fields, True))
    assert AgentCapabilities.model_validate(every) == AgentCapabilities(
        **dict.fromkeys(AgentCapabilities.model_fields, True)
    )


def test_a_message_carries_the_attachments_the_adapters_take() -> None:
    body = MessageRequest.model_validate(
        {"message": "hi", "attachments": [{"path": "a.png", "mime": "image/png"}], "ifIdle": True}
    )
    assert body.attachments == [Attachment(path="a.png", mime="image/png")]
    assert body.if_idle
