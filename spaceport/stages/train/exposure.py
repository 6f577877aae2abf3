"""Exposure: the photos of one capture were not all taken with the same exposure.

A phone (or a camera in an automatic mode) picks exposure time and ISO per shot: on monstree they
range from 1/120 s at ISO 40 to 1/40 s at ISO 25, and the photos' mean brightness follows (the
held-out IMG_1051, exposed 1.5x the median, is 13% brighter than a render fitted to the others).
Trained as they are, the Gaussians bake each photo's exposure into view-dependent colour, which
is wrong for every other view.

Every photo's exposure is known before any pixel is looked at: ``H = exposure time x ISO /
f-number²`` from its EXIF (:func:`spaceport.stages.train.data.exif_exposure`). The splat is
fitted at the median exposure of the training photos, and each render is scaled by ``(H / H_median) ** gamma`` before it is compared with its photo. One
``gamma`` for the whole capture is learned from the training photos (it starts at 1/2.2: an sRGB
tone curve over linear exposure); a held-out photo gets the same rule with its own EXIF exposure,
never anything learned from its pixels. The exported splat is the median exposure's.

Exposure figures are compared only between photos of the same camera (EXIF make and model): two
phones' ISO scales need not agree, so each camera's photos are scaled against that camera's own
median, and what differs between cameras is left to the Gaussians, as without matching. A camera
with no training photo gets no scaling.

Without EXIF exposure on every view (video frames, stripped files), or when no camera's training
photos differ in exposure, nothing is scaled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spaceport.core.summaries import ExposureFit

GAMMA0 = 1 / 2.2
#: Exposures within this ratio of each other count as the same (rounding of EXIF rationals).
SAME = 1.02
#: Adam's learning rate of gamma.
GAMMA_LR = 2e-3


class Exposure:
    """The learned tone exponent and each view's exposure over its camera's reference; :meth:`gain`."""

    def __init__(self, ratios: dict[str, float], references: dict[str, float], device: torch.device) -> None:
        self.ratios = ratios
        self.references = references
        self.gamma = torch.nn.Parameter(torch.tensor(GAMMA0, device=device))
        self.optimizer = torch.optim.Adam([self.gamma], lr=GAMMA_LR)

    @classmethod
    def of(cls, exposures: dict[str, float | None], cameras: dict[str, str], train: list[str],
           device: torch.device) -> Exposure | None:
        """``exposures`` and ``cameras`` (EXIF make and model) by view name. None when a view has no EXIF
        exposure or no camera's training photos differ in exposure."""
        if not exposures or any(h is None for h in exposures.values()):
            return None
        known = {k: float(h) for k, h in exposures.items() if h is not None}
        references: dict[str, float] = {}
        spread = 1.0
        for camera in sorted(set(cameras.values())):
            values = [known[n] for n in train if cameras[n] == camera]
            if values:
                references[camera] = float(np.median(values))
                spread = max(spread, max(values) / min(values))
        if spread < SAME:
            return None
        ratios = {n: h / references[cameras[n]] if cameras[n] in references else 1.0 for n, h in known.items()}
        return cls(ratios, references, device)

    def gain(self, name: str) -> torch.Tensor:
        """What a render of view ``name`` is multiplied by: ``(H / H_camera_median) ** gamma``."""
        return self.ratios[name] ** self.gamma

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"gamma": float(self.gamma.detach()), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.gamma.fill_(float(state["gamma"]))
        self.optimizer.load_state_dict(state["optimizer"])

    def fit(self) -> ExposureFit:
        """What metrics.json records of it."""
        values = list(self.ratios.values())
        return ExposureFit(references={k: round(v, 6) for k, v in self.references.items()},
                           spread=round(max(values) / min(values), 4), gamma=round(float(self.gamma.detach()), 4))
