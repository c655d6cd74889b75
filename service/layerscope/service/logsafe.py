"""Log lines that untrusted text cannot forge: control characters in a message are written escaped.

Model names are checked against a pattern and layer names are refused with control characters at the
scan, but messages also quote Keras's refusals and callers' values; a newline in one of them would start
a forged log line, and an ANSI escape would recolour or hide the real one. Tracebacks keep their lines.
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` on one line, every control character written as its escape (`\\n`, `\\x1b`)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class EscapingFormatter(logging.Formatter):
    """A formatter whose message part (the format string filled with its arguments) is escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging's own name
        record.message = escape(record.message)
        return super().formatMessage(record)


def install(level: int = logging.INFO, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
    """Configure the root logger (as logging.basicConfig would) with the escaping formatter."""
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(EscapingFormatter(fmt))
