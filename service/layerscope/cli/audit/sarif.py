"""The audit document as SARIF 2.1.0, for code-scanning tools: one rule per finding code."""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _uri(source: str) -> str:
    path = Path(source)
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _rules(codes: list[str]) -> list[dict[str, Any]]:
    from layerscope.service.diagnosis.catalog import CATALOG

    rules = []
    for code in codes:
        info = CATALOG.get(code)
        text = info.summary if info else code
        rules.append(
            {
                "id": code,
                "name": "".join(part.title() for part in code.split("-")),
                "shortDescription": {"text": text},
                "fullDescription": {"text": f"{text} {info.why}" if info else text},
                "help": {"text": info.fix if info else f"layerscope audit --explain {code}"},
                "defaultConfiguration": {"level": LEVEL[info.severity.value] if info else "warning"},
            }
        )
    return rules


def to_sarif(doc: dict[str, Any]) -> dict[str, Any]:
    codes = sorted({f["code"] for m in doc["models"] for f in m["findings"]})
    index = {code: i for i, code in enumerate(codes)}
    results = []
    notifications = []
    for model in doc["models"]:
        location = {"physicalLocation": {"artifactLocation": {"uri": _uri(model["source"])}}}
        if model["error"]:
            notifications.append(
                {
                    "level": "error",
                    "message": {"text": f"{model['source']} could not be audited: {model['error']['message']}"},
                    "locations": [location],
                }
            )
        for f in model["findings"]:
            results.append(
                {
                    "ruleId": f["code"],
                    "ruleIndex": index[f["code"]],
                    "level": LEVEL[f["severity"]],
                    "message": {"text": f"{f['message']} Suggestion: {f['suggestion']}"},
                    "locations": [
                        {
                            **location,
                            "logicalLocations": [{"name": layer, "kind": "member"} for layer in f["layers"]],
                        }
                    ],
                    "properties": {"layers": f["layers"], "evidence": f["evidence"]},
                }
            )
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "layerscope",
                        "version": version("layerscope"),
                        "informationUri": "https://pypi.org/project/layerscope/",
                        "rules": _rules(codes),
                    }
                },
                "invocations": [
                    {"executionSuccessful": not notifications, "toolExecutionNotifications": notifications}
                ],
                "originalUriBaseIds": {"SRCROOT": {"uri": Path(os.getcwd()).as_uri() + "/"}},
                "results": results,
            }
        ],
    }
