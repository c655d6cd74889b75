from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.rules.base import StaticRule, check_bool
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class FeatureMapTooSmall(StaticRule):
    """A kernel or pool window larger than its input map, or a map collapsing to nothing.

    Symptom: too many down-sampling steps for the input size leave maps smaller than the windows that
    read them. With "same" padding a window wider than 2n - 1 over a map of side n has taps that only
    ever read padding: a 3x3 kernel on a 1x1 map uses one weight in nine and the other eight never
    train, a pool over a 1x1 map does nothing, and a map of size 0 has no content at all. (Keras refuses
    "valid" windows larger than the map when the model is built.)
    Remedy: feed a larger input, remove a pooling/strided stage, or use 1x1 kernels or global pooling
    once the maps are this small.

    With strict=True any window larger than its map fires (a 3x3 kernel on a 2x2 map too: every tap
    still trains there, but most of each window reads padding).
    """

    code = "feature-map-too-small"
    severity = Severity.ERROR

    def __init__(self, strict: bool = False) -> None:
        self.strict = check_bool("strict", strict)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        offenders: list[tuple[LayerInfo, tuple[int, ...], tuple[int | None, ...]]] = []
        for layer in description.layers:
            if not (lay.is_conv(layer) or lay.is_pool(layer)):
                continue
            in_map = lay.spatial(lay.input_shape(layer))
            out_map = lay.spatial(lay.output_shape(layer))
            windows = _effective_window(layer)
            if any(d == 0 for d in out_map) or (len(windows) == len(in_map) and self._too_big(windows, in_map)):
                offenders.append((layer, windows, in_map))
        if not offenders:
            return []
        layer, windows, in_map = offenders[0]
        more = f" ({len(offenders) - 1} more layers like it)" if len(offenders) > 1 else ""
        what = "kernel" if lay.is_conv(layer) else "pool window"
        limit = "no larger than the map" if self.strict else "at most 2n - 1 wide over a map of side n"
        return [
            self.finding(
                [o[0].name for o in offenders],
                f"{layer.class_name} '{layer.name}' has a {what} of {windows} over an input map of {tuple(in_map)}"
                f"{more}; expected a window {limit}, received one whose taps partly only ever read padding.",
                f"Use a larger model input, fewer down-sampling steps before '{layer.name}', or 1x1 kernels / "
                f"global pooling at this depth.",
                {
                    "window": list(windows),
                    "input_map": list(in_map),
                    "layers": len(offenders),
                    "padding": layer.config.get("padding"),
                },
            )
        ]

    def _too_big(self, windows: tuple[int, ...], in_map: tuple[int | None, ...]) -> bool:
        for window, side in zip(windows, in_map, strict=True):
            if side is None:
                continue
            if window > (side if self.strict else 2 * side - 1):
                return True
        return False


def _effective_window(layer: LayerInfo) -> tuple[int, ...]:
    windows = lay.window(layer)
    dilation = lay.ints(layer.config.get("dilation_rate", 1)) if lay.is_conv(layer) else ()
    if len(dilation) == 1:
        dilation = dilation * len(windows)
    if len(dilation) != len(windows):
        return windows
    return tuple(k + (k - 1) * (d - 1) for k, d in zip(windows, dilation, strict=True))
