"""The client explains itself: every public method of Client and AsyncClient has a docstring, and
`capture` says which kinds exist and that layer names are globs."""

from __future__ import annotations

import inspect

import pytest

from layerscope.client import AsyncClient, Client
from layerscope.service.domain.selection import KINDS


def public_methods(cls: type) -> list[str]:
    return [name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")]


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_every_public_method_has_a_docstring(cls: type) -> None:
    methods = public_methods(cls)
    assert len(methods) >= 13, methods  # capture, close, compare, diagnose, get_run, ...
    undocumented = [name for name in methods if len(inspect.getdoc(getattr(cls, name)) or "") < 30]
    assert undocumented == []


def test_the_twins_have_the_same_methods_and_the_same_docstrings() -> None:
    assert public_methods(Client) == public_methods(AsyncClient)
    for name in public_methods(Client):
        assert inspect.getdoc(getattr(Client, name)) == inspect.getdoc(getattr(AsyncClient, name)), name


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_capture_names_every_kind_says_globs_and_where_batch_norm_weights_are(cls: type) -> None:
    doc = inspect.getdoc(cls.capture) or ""
    assert all(f'"{kind}"' in doc for kind in KINDS), sorted(KINDS)
    assert "glob" in doc
    for weight in ("gamma", "moving_variance", "embeddings", "forward_lstm/kernel"):
        assert weight in doc
