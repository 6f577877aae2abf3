"""gsplat's DefaultStrategy with a Gaussian cap that growth respects.

DefaultStrategy has no cap: every refinement round clones the small Gaussians and splits the large
ones whose screen-space gradient is above ``grow_grad2d``, however many there are. With a cap the
overflow was trimmed afterwards (:func:`~spaceport.stages.train.gaussians.enforce_cap` removes the
most transparent), so a run at its cap replaced thousands of Gaussians every round: splits swap a
fitted Gaussian for two random samples of it, and the trim removes faint but useful ones. On
monstree at a 60,000 cap that kept the training views' PSNR swinging by 3-4 dB from round to round
(24.7 / 20.3 / 24.0 dB at steps 1,000 / 1,500 / 1,750) until refinement ended.

Here growth takes only the free slots: when more Gaussians qualify than the cap leaves room for,
the ones with the highest gradients grow (each clone or split adds one), and at the cap none do.
Pruning is unchanged, so what it frees is grown again in the next round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gsplat.strategy import DefaultStrategy


@dataclass
class CappedDefaultStrategy(DefaultStrategy):
    cap: int = 1_000_000_000
    """Most Gaussians growth may reach."""

    def _grow_gs(self, params: Any, optimizers: dict[str, torch.optim.Optimizer], state: dict[str, Any],
                 step: int) -> tuple[int, int]:
        free = self.cap - len(params["means"])
        grads = state["grad2d"] / state["count"].clamp_min(1)
        high = grads[grads > self.grow_grad2d]
        if len(high) <= free:
            return super()._grow_gs(params, optimizers, state, step)
        if free <= 0:
            return 0, 0
        threshold = self.grow_grad2d
        # Only gradients above the (free+1)-th highest grow: at most ``free`` of them.
        self.grow_grad2d = float(torch.topk(high, free + 1).values[-1])
        try:
            return super()._grow_gs(params, optimizers, state, step)
        finally:
            self.grow_grad2d = threshold
