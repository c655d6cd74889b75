"""Summaries kept compactly while a reference is being made.

A reference needs every one of its requests' summaries at once (its frozen edges come from all of them), and
a `Summary` keeps its histogram and unit activity as tuples of Python numbers: about 32 bytes a value, so
200 requests of a wide model would hold hundreds of megabytes. Here each summary is a float64 row of its
scalars and a float32 row of its histogram and activity, 4 bytes a value, turned back into a `Summary`
one layer at a time when the reference is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerscope.service.domain.summary import Summary


@dataclass(frozen=True)
class CompactSummary:
    scalars: np.ndarray
    """count, mean, std, min, max, zero fraction, nan, +inf, -inf, histogram low, histogram top."""
    values: np.ndarray
    """The histogram, then the unit activity (float32)."""
    bins: int

    @classmethod
    def of(cls, summary: Summary) -> CompactSummary:
        scalars = np.array(
            [summary.count, summary.mean, summary.std, summary.min, summary.max, summary.zero_fraction,
             summary.nan, summary.posinf, summary.neginf, *summary.histogram_range],
            dtype=np.float64,
        )  # fmt: skip
        values = np.array([*summary.histogram, *summary.unit_activity], dtype=np.float32)
        return cls(scalars, values, len(summary.histogram))

    @property
    def units(self) -> int:
        return len(self.values) - self.bins

    def summary(self) -> Summary:
        s = self.scalars
        return Summary(
            count=int(s[0]),
            mean=float(s[1]),
            std=float(s[2]),
            min=float(s[3]),
            max=float(s[4]),
            zero_fraction=float(s[5]),
            nan=int(s[6]),
            posinf=int(s[7]),
            neginf=int(s[8]),
            histogram=tuple(int(c) for c in self.values[: self.bins]),
            histogram_range=(float(s[9]), float(s[10])),
            unit_activity=tuple(float(a) for a in self.values[self.bins :]),
        )

    @property
    def nbytes(self) -> int:
        return int(self.scalars.nbytes + self.values.nbytes)
