"""What every wire model shares: camelCase names on the wire (as v0.1), snake_case in Python,
and the pattern of the ids in paths."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

#: Session, permission and question ids.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
ID_RE = re.compile(ID_PATTERN)

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class ApiModel(BaseModel):
    """A body of the HTTP API: built by snake_case name, sent by camelCase alias."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True
    )

    def wire(self) -> dict[str, Any]:
        """The JSON object to send: camelCase, without the fields left unset (None)."""
        return self.model_dump(mode="json", exclude_none=True)
