"""What a diagnosis rule reports: a finding with its severity."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from layerscope.service.domain.jsonable import JsonValue


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    layers: tuple[str, ...]
    message: str
    suggestion: str
    evidence: Mapping[str, JsonValue] = field(default_factory=dict)
