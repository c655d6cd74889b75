"""The client spreads calls over every address of its target with round-robin, as on a headless Service."""

from __future__ import annotations

from pathlib import Path

from layerscope.client import Client
from tests.conftest import start_server


def list_models_calls(server) -> float:  # type: ignore[no-untyped-def]
    value = server.app.telemetry.registry.get_sample_value(
        "layerscope_rpcs_total", {"method": "ListModels", "code": "OK"}
    )
    return value or 0.0


def test_calls_are_spread_over_every_replica(tmp_path: Path) -> None:
    replicas = [start_server(tmp_path / f"replica{i}") for i in range(2)]
    try:
        target = "ipv4:" + ",".join(r.target for r in replicas)
        with Client(target, timeout=30) as c:
            for _ in range(10):  # the second connection may come up a call or two after the first
                c.list_models()
            before = [list_models_calls(r) for r in replicas]
            for _ in range(20):
                assert c.list_models() == []
        spread = [list_models_calls(r) - b for r, b in zip(replicas, before, strict=True)]
        assert sum(spread) == 20 and min(spread) >= 8, spread  # round-robin: about half each
    finally:
        for r in replicas:
            r.stop()


def test_a_dns_target_resolves_and_answers(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with Client(f"dns:///127.0.0.1:{server.app.port}", timeout=30) as c:
            assert c.health() == "SERVING"
    finally:
        server.stop()
