"""Accelerator set-up and accounting: memory growth on, memory in use for the metrics."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def configure_devices() -> list[str]:
    """Let each GPU's memory grow on demand (TensorFlow would otherwise take it all at start-up).

    Must run before TensorFlow initialises the GPUs; later calls are harmless no-ops.
    """
    tf = _tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth can no longer change, and that is fine
            log.debug("memory growth already fixed for %s", gpu.name)
    return [g.name for g in gpus]


def initialise_devices() -> None:
    """Create the logical devices now (after `configure_devices`), so the runtime's start-up happens here
    and not inside the first call that runs a model."""
    _tensorflow().config.list_logical_devices()


def memory_in_use() -> dict[str, int]:
    """Bytes in use per logical GPU; empty on a CPU-only machine, or where this process never started TensorFlow
    (nothing of ours can be in use then, and asking must not start it)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return {}
    usage = {}
    for device in tf.config.list_logical_devices("GPU"):
        try:
            usage[device.name] = int(tf.config.experimental.get_memory_info(device.name)["current"])
        except (ValueError, tf.errors.OpError):
            continue
    return usage


def _tensorflow() -> Any:
    """TensorFlow, imported when the devices are set up, not when this module is: the use cases import it to
    read memory after each capture, and importing them (in the fast tests, say) must not start TensorFlow."""
    import tensorflow as tf

    return tf
