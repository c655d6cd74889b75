"""Untrusted text cannot forge log lines: control characters in a logged message come out escaped."""

from __future__ import annotations

import io
import logging

from layerscope.service.logsafe import EscapingFormatter, escape


def test_newlines_and_ansi_escapes_are_escaped_on_one_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test-log-escaping")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("model %s did not load: %s", "m", "bad\n2026-01-01 INFO admin logged in \x1b[31m\r")
    finally:
        log.removeHandler(handler)
    assert stream.getvalue() == "WARNING model m did not load: bad\\n2026-01-01 INFO admin logged in \\x1b[31m\\r\n"


def test_printable_text_is_unchanged() -> None:
    assert escape("conv/relu:0 — ünïcode") == "conv/relu:0 — ünïcode"
