"""The mouth track: what the driver says the mouth does on every video frame.

Written by the driver (from speech), read by the renderer and the generator, judged by
the sync model. Parameters are in :mod:`dubber.mouth.params` units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dubber.mouth.params import PARAMS

# Rhubarb Lip Sync's mouth shapes: A closed (M B P), B slightly open with the teeth together
# (most consonants, EE), C open (EH AE), D wide open (AA), E slightly rounded (AO ER),
# F puckered (UW OW W), G upper teeth on the lower lip (F V), H tongue raised (long L),
# X at rest (silence).
VISEMES = "ABCDEFGHX"


@dataclass(frozen=True)
class MouthTrack:
    """Per video frame, at the frame's own presentation time.

    Attributes:
        times: shape = (N,), float64: the frames' presentation times in seconds.
        viseme: shape = (N,), uint8: index into :data:`VISEMES`.
        params: shape = (N, 3), float32: ``opening, width, rounding``
            (:data:`dubber.mouth.params.PARAMS`).
        speech: shape = (N,), bool: the voice is speaking at this frame.
        confidence: shape = (N,), float32 in [0, 1]: how sure the driver is of the shape.
    """

    times: np.ndarray
    viseme: np.ndarray
    params: np.ndarray
    speech: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.times)
        if self.params.shape != (n, len(PARAMS)):
            raise ValueError(f"params must have shape ({n}, {len(PARAMS)}), "
                             f"not {self.params.shape}")
        for name in ("viseme", "speech", "confidence"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have {n} entries")

    def __len__(self) -> int:
        return len(self.times)

    @property
    def opening(self) -> np.ndarray:
        return self.params[:, 0]

    @property
    def width(self) -> np.ndarray:
        return self.params[:, 1]

    @property
    def rounding(self) -> np.ndarray:
        return self.params[:, 2]

    def labels(self) -> list[str]:
        """The visemes as letters."""
        return [VISEMES[int(v)] for v in self.viseme]
