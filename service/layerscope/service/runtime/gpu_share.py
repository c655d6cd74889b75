"""A share of each GPU for one process: model workers that share a GPU each get a fixed part of it.

TensorFlow takes a fixed amount per GPU through a logical device with a memory limit, given in MiB, so the
total comes from the CUDA driver first. Memory growth (what `start_tensorflow` sets) cannot be combined with
such a device, so this is the worker's alternative start. Like quiet_start, this module imports nothing
heavy itself.
"""

from __future__ import annotations

import ctypes
import logging
import os

from layerscope.service.runtime.quiet_start import native_stderr_muted

log = logging.getLogger(__name__)


def start_tensorflow_with_gpu_share(fraction: float) -> list[str]:
    """`start_tensorflow`, with each visible GPU limited to `fraction` of its memory; the GPUs found."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_muted():
        import tensorflow as tf

        from layerscope.service.runtime.device import initialise_devices

        gpus = tf.config.list_physical_devices("GPU")
        for index, gpu in enumerate(gpus):
            total = _total_memory(index)
            if total is None:
                log.warning("cannot read the memory of %s; its share stays unlimited", gpu.name)
                continue
            limit = int(total * fraction) // (1024 * 1024)
            tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
        initialise_devices()
    return [g.name for g in gpus]


def _total_memory(ordinal: int) -> int | None:
    """Bytes of the CUDA device `ordinal` (TensorFlow numbers visible GPUs as CUDA does), from the driver."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device, total = ctypes.c_int(), ctypes.c_size_t()
    ok = (
        cuda.cuInit(0) == 0
        and cuda.cuDeviceGet(ctypes.byref(device), ordinal) == 0
        and cuda.cuDeviceTotalMem_v2(ctypes.byref(total), device) == 0
    )
    return int(total.value) if ok else None
