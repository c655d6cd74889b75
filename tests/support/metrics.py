"""Reading a server's /metrics the way Prometheus would: every layerscope sample by series."""

from __future__ import annotations

import urllib.request


def scrape(url: str) -> dict[str, float]:
    """`{'layerscope_rpcs_total{code="OK",method="Predict"}': 3.0, ...}` for every layerscope sample."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("layerscope_"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples
