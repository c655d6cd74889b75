"""Run the rules over one model: static rules always, runtime rules when there is runtime evidence."""

from __future__ import annotations

from collections.abc import Sequence

from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.rules import Rule, default_rules
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding


class Diagnoser:
    def __init__(self, rules: Sequence[Rule] | None = None) -> None:
        self.rules: tuple[Rule, ...] = tuple(default_rules() if rules is None else rules)
        codes = [rule.code for rule in self.rules]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise ValueError(f"Expected one rule per finding code; received several for {duplicates}.")

    def diagnose(self, description: ModelDescription, evidence: RuntimeEvidence | None = None) -> list[Finding]:
        """Every finding, most severe first, then by code (stable within a code: graph order); a finding that
        another rule's finding explains (`Rule.explains`) is left out."""
        findings: list[Finding] = []
        for rule in self.rules:
            if rule.kind == "runtime" and evidence is None:
                continue
            findings.extend(rule.check(description, evidence))
        fired = {f.code for f in findings}
        explained = {code for rule in self.rules if rule.code in fired for code in rule.explains}
        return sorted((f for f in findings if f.code not in explained), key=lambda f: (-f.severity.rank, f.code))
