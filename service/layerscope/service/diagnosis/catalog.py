"""What each finding code means, for `layerscope audit --explain CODE`: read from the rule classes, so
the docstrings are the one source of truth."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from layerscope.service.diagnosis.rules import RULE_CLASSES, Rule
from layerscope.service.domain.findings import Severity


@dataclass(frozen=True)
class CodeInfo:
    code: str
    severity: Severity
    kind: str
    summary: str
    why: str
    fix: str
    thresholds: dict[str, object]


def _section(doc: str, name: str) -> str:
    match = re.search(rf"{name}:\s*(.*?)(?:\n\s*\n|\s(?:Symptom|Remedy):|\Z)", doc, flags=re.S)
    return " ".join(match.group(1).split()) if match else ""


def info(rule: type[Rule]) -> CodeInfo:
    """What `--explain` prints for a rule, read from its class docstring (first paragraph: the summary;
    `Symptom:` why it matters; `Remedy:` and further paragraphs: the fix) and its default thresholds."""
    doc = inspect.getdoc(rule) or ""
    summary = doc.split("\n\n", 1)[0].strip()
    notes = [" ".join(p.split()) for p in doc.split("\n\n")[1:] if not p.lstrip().startswith(("Symptom", "Remedy"))]
    fix = " ".join([_section(doc, "Remedy"), *notes]).strip()
    return CodeInfo(
        code=rule.code,
        severity=rule.severity,
        kind=rule.kind,
        summary=" ".join(summary.split()),
        why=_section(doc, "Symptom"),
        fix=fix,
        thresholds=dict(rule().get_config()),
    )


CATALOG: dict[str, CodeInfo] = {cls.code: info(cls) for cls in RULE_CLASSES}


def explain(code: str) -> str:
    """A readable explanation of one finding code; KeyError for an unknown code."""
    entry = CATALOG[code]
    thresholds = ", ".join(f"{k}={v!r}" for k, v in entry.thresholds.items()) or "none"
    return "\n".join(
        [
            f"{entry.code} ({entry.severity.value}, {entry.kind} rule)",
            f"  Fires when: {entry.summary}",
            f"  Why it matters: {entry.why}",
            f"  How to fix: {entry.fix}",
            f"  Default thresholds: {thresholds}",
        ]
    )
