"""The Gaussian cap under gsplat's DefaultStrategy: growth takes the free slots, highest gradients first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spaceport.stages.train.config import StrategyConfig, config_for
from spaceport.stages.train.gaussians import init_params, make_optimizers


def _round(cap: int, n: int = 100, qualify: int = 50, prune: int = 0, small: bool = False):
    """One refinement round of ``n`` Gaussians, ``qualify`` of them with a screen-space gradient above
    the threshold (rising with their index), ``prune`` of them transparent, all small (cloned, not
    split) if ``small``; the Gaussians after it."""
    optim = config_for("fast", {}).optim
    rng = np.random.default_rng(0)
    params = init_params(rng.normal(size=(n, 3)).astype(np.float32), rng.random((n, 3)).astype(np.float32), optim)
    with torch.no_grad():
        params["opacities"][:prune] = -10.0  # below DefaultStrategy's prune_opa
        params["means"][:, 0] = torch.arange(n, dtype=torch.float32)  # who is who after the round
        if small:
            params["scales"][:] = -12.0
    optimizers = make_optimizers(params, optim, 1.0)
    strategy = StrategyConfig(max_gaussians=cap, refine_start=0, refine_stop=1000, refine_every=10).build()
    state = strategy.initialize_state(scene_scale=1.0)
    state["grad2d"] = torch.zeros(n)
    state["grad2d"][n - qualify:] = strategy.grow_grad2d * (2 + torch.arange(qualify, dtype=torch.float32))
    state["count"] = torch.ones(n)
    state["radii"] = torch.zeros(n)
    strategy._grow_gs(params, optimizers, state, 10)
    strategy._prune_gs(params, optimizers, state, 10)
    assert strategy.grow_grad2d == StrategyConfig().grow_grad2d  # the threshold is put back
    return params


@pytest.mark.parametrize(("cap", "grown"), [(1000, 50), (120, 20), (100, 0), (90, 0)])
def test_growth_takes_only_the_free_slots(cap, grown):
    params = _round(cap)
    assert len(params["means"]) == 100 + grown


def test_the_highest_gradients_grow_first():
    """With 20 free slots of 50 candidates, the 20 with the highest gradients are the ones cloned."""
    params = _round(120, small=True)
    counts = torch.bincount(params["means"][:, 0].detach().round().long(), minlength=100)
    assert counts.tolist() == [1] * 80 + [2] * 20


def test_pruning_frees_slots_that_the_next_round_grows():
    """At the cap, 10 transparent Gaussians are pruned and nothing grows; the next round may grow 10."""
    params = _round(100, prune=10)
    assert len(params["means"]) == 90
