"""Fixtures for the diagnosis tests: the Keras backend quiet, seeded, and applications built once."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
