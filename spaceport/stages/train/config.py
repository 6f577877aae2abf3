"""Options of the training stage: four frozen dataclasses, a docstring per field, and three presets.

:class:`TrainConfig` groups them as gsplat's ``simple_trainer`` reads its ``Config``: what to
train on (:class:`DataConfig`), how to fit it (:class:`OptimConfig`), how Gaussians are added
and removed (:class:`StrategyConfig`, turned into gsplat's own ``DefaultStrategy`` or
``MCMCStrategy``) and how the run behaves (:class:`RuntimeConfig`). The groups are for readers
of the code; outside it every option has one flat name (``--steps``, ``--set train.steps=500``,
the ``steps`` hyperparameter), see :mod:`spaceport.core.config`.

Imports only the stdlib and spaceport.core.config/errors: the Lambdas and the CDK app read it to plan
a job. Values arrive as strings (SageMaker hyperparameters, CLI flags) via
:func:`spaceport.core.config.from_strings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from spaceport.core.errors import ConfigInvalid


def _at_least(cfg: object, low: int | float, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value < low:
            raise ConfigInvalid(f"{name}={value} must {'be at least 1' if low == 1 else 'not be negative'}")


@dataclass(frozen=True)
class DataConfig:
    """What to train on: where the SfM model and images are, which views are held out, at what size."""

    model_dir: str = "sparse/0"
    """Where the COLMAP model is inside the input folder (the synthetic scenes keep theirs in gt/sparse/0)."""
    images_dir: str = "images"
    """Where the images are inside the input folder."""
    test_every: int = 8
    """Hold out every Nth image (sorted by name) for evaluation; 0 holds out none."""
    downscale: int = 1
    """Integer factor to shrink the images (and intrinsics) by before training."""
    background: Literal["black", "white"] = "black"
    """Background colour behind the splat (training and evaluation renders)."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "downscale")
        _at_least(self, 0, "test_every")
        if self.test_every == 1:
            raise ConfigInvalid("test_every=1 would hold out every image", "Use 0 (none) or 2 and up")


@dataclass(frozen=True)
class OptimConfig:
    """How to fit the Gaussians: the initial Gaussians, the loss, and Adam's learning rates."""

    steps: int = 7000
    """Optimisation steps (one image per step)."""
    sh_degree: int = 3
    """Spherical-harmonics degree of the colours (0-3); bands are added progressively."""
    sh_degree_interval: int = 1000
    """Steps between adding one SH band."""
    ssim_lambda: float = 0.2
    """Weight of the D-SSIM term in the loss (the rest is L1)."""
    opacity_reg: float = 0.0
    """Weight of the mean opacity in the loss (MCMC uses 0.01: unused Gaussians fade and get relocated)."""
    scale_reg: float = 0.0
    """Weight of the mean scale in the loss (MCMC uses 0.01)."""
    means_lr: float = 1.6e-4
    """Learning rate of the positions, times the scene scale; decays to 1% by the last step."""
    scales_lr: float = 5e-3
    """Learning rate of the log-scales."""
    quats_lr: float = 1e-3
    """Learning rate of the rotations."""
    opacities_lr: float = 5e-2
    """Learning rate of the opacity logits."""
    sh0_lr: float = 2.5e-3
    """Learning rate of the base colour (SH band 0)."""
    shN_lr: float = 1.25e-4
    """Learning rate of the higher SH bands."""
    init_opacity: float = 0.1
    """Opacity of the Gaussians made from the sparse points."""
    sky_points: int = 0
    """Extra Gaussians on a sphere around the scene for the sky and far background (SfM has no points there)."""
    init_scale: float = 1.0
    """Initial size as a multiple of the mean distance to the 3 nearest points."""
    antialiased: bool = True
    """Render with gsplat's antialiased rasterizer (Mip-Splatting's 2D filter: each Gaussian's opacity is
    scaled by the energy its 0.3 px² low-pass adds, so a Gaussian smaller than a pixel fades instead of
    swelling to a pixel-sized blob). The splat is tagged so that viewers and converters render it the
    same way (:attr:`spaceport.geometry.splat.Splat.antialiased`). Held-out PSNR on monstree, 1,000
    steps, two seeds: 22.13 and 22.47 dB against 21.75 and 21.83 without."""
    exposure: bool = True
    """Compare each render with its photo at the photo's EXIF exposure (time x ISO / f-number²,
    relative to the median of the same camera's training photos; one tone exponent learned):
    auto-exposure differences stop being baked into the colours. Off, or without EXIF exposure on
    every photo: renders as they are."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "steps", "sh_degree_interval")
        _at_least(self, 0, "sky_points")
        if not 0 <= self.sh_degree <= 3:
            raise ConfigInvalid(f"sh_degree={self.sh_degree} must be 0, 1, 2 or 3")
        if self.opacity_reg < 0 or self.scale_reg < 0:
            raise ConfigInvalid("opacity_reg and scale_reg must not be negative")
        if not 0.0 <= self.ssim_lambda <= 1.0:
            raise ConfigInvalid(f"ssim_lambda={self.ssim_lambda} must be between 0 and 1")
        for name in ("means_lr", "scales_lr", "quats_lr", "opacities_lr", "sh0_lr", "shN_lr", "init_scale"):
            if getattr(self, name) <= 0:
                raise ConfigInvalid(f"{name}={getattr(self, name)} must be positive")
        if not 0.0 < self.init_opacity < 1.0:
            raise ConfigInvalid(f"init_opacity={self.init_opacity} must be between 0 and 1 (exclusive)")

    def learning_rates(self, scene_scale: float) -> dict[str, float]:
        """Adam's learning rate of each parameter; the positions' scales with the scene (gsplat's rule)."""
        return {"means": self.means_lr * scene_scale, "scales": self.scales_lr, "quats": self.quats_lr,
                "opacities": self.opacities_lr, "sh0": self.sh0_lr, "shN": self.shN_lr}


@dataclass(frozen=True)
class StrategyConfig:
    """Densification: which gsplat strategy, and the arguments :meth:`build` passes straight to it."""

    strategy: Literal["default", "mcmc"] = "default"
    """Densification: gsplat's DefaultStrategy (split/clone/prune; CPU or GPU) or MCMCStrategy (CUDA only)."""
    max_gaussians: int = 1_500_000
    """Cap on the number of Gaussians (MCMC's cap_max; with 'default' the lowest-opacity ones are pruned)."""
    refine_start: int = 500
    """First step of densification."""
    refine_stop: int = 15_000
    """Last step of densification."""
    refine_every: int = 100
    """Steps between densification rounds."""
    reset_every: int = 3000
    """Steps between opacity resets ('default' strategy)."""
    grow_grad2d: float = 0.0002
    """Screen-space gradient above which a Gaussian is split or cloned ('default' strategy)."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "max_gaussians", "refine_every")
        _at_least(self, 0, "reset_every", "refine_start", "refine_stop")
        if self.grow_grad2d <= 0:
            raise ConfigInvalid(f"grow_grad2d={self.grow_grad2d} must be positive")

    def build(self) -> Any:
        """gsplat's strategy object for these options (gsplat is imported here, so this module stays
        stdlib-only). gsplat's names: ``refine_start_iter``, ``refine_stop_iter``, ``cap_max``
        (gsplat/strategy/default.py and mcmc.py)."""
        from gsplat.strategy import MCMCStrategy

        from spaceport.stages.train.strategy import CappedDefaultStrategy

        common = {"refine_start_iter": self.refine_start, "refine_stop_iter": self.refine_stop,
                  "refine_every": self.refine_every}
        if self.strategy == "mcmc":
            return MCMCStrategy(cap_max=self.max_gaussians, **common)
        # reset_every=0 means never; gsplat has no "never", so a step no run reaches
        return CappedDefaultStrategy(reset_every=self.reset_every or 10**9, grow_grad2d=self.grow_grad2d,
                                     cap=self.max_gaussians, **common)


@dataclass(frozen=True)
class RuntimeConfig:
    """How the run behaves: device, seed, progress, checkpoints, early stopping and the time budget."""

    minutes: float = 0.0
    """Wall-time budget of the training stage in minutes (0: none, train ``steps``). With a budget a short
    calibration of the step cost here chooses downscale, steps, max_gaussians and the refinement
    schedule (:mod:`spaceport.stages.train.budget`), and the loop also stops at the deadline."""
    target_psnr: float | None = None
    """Stop early once the held-out PSNR (dB) reaches this; checked every eval_every steps. None: never."""
    eval_every: int = 1000
    """Steps between held-out evaluations (for target_psnr and the progress lines)."""
    checkpoint_every: int = 1000
    """Steps between resumable checkpoints (0: none)."""
    log_every: int = 100
    """Steps between progress lines."""
    seed: int = 0
    """Random seed; on CPU the same seed gives the same splat."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: 'auto' uses CUDA when available."""
    cpu_threads: int = 1
    """Torch threads on CPU (0: torch's default). 1 keeps a seeded run bit-for-bit reproducible; more
    threads change float summation order (two runs with 2 threads gave 24.22 and 24.25 dB). Measured on
    the fast demo: idle 2-core machine, 2 threads 49.6 s vs 1 thread 74.4 s; on a busy shared 2-core
    machine one thread was 1.6-8x faster per step (OpenMP threads spin while waiting for a core)."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "eval_every", "log_every")
        _at_least(self, 0, "checkpoint_every", "cpu_threads")
        if self.target_psnr is not None and self.target_psnr <= 0:
            raise ConfigInvalid(f"target_psnr={self.target_psnr} must be positive (or none)")
        if not self.minutes >= 0:
            raise ConfigInvalid(f"minutes={self.minutes} must be a positive number of minutes (or 0: no budget)")


@dataclass(frozen=True)
class TrainConfig:
    """How to turn an SfM model and its images into a Gaussian splat."""

    data: DataConfig = field(default_factory=DataConfig)
    """What to train on."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """How to fit the Gaussians."""
    densify: StrategyConfig = field(default_factory=StrategyConfig)
    """How Gaussians are added and removed (gsplat's strategy)."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """Device, seed, progress, checkpoints, early stopping."""


#: Overrides of the defaults, as strings. "fast" is the CPU demo preset (24 views 640x480 train in
#: about a minute on 2 cores); "default" is a GPU job's usual setting; "quality" uses MCMC on CUDA.
PRESETS: dict[str, dict[str, str]] = {
    "fast": {
        "steps": "400", "downscale": "4", "sh_degree": "1", "sh_degree_interval": "200",
        "refine_start": "100", "refine_stop": "350", "refine_every": "50", "reset_every": "0",
        "grow_grad2d": "0.0002", "max_gaussians": "60000", "eval_every": "100", "checkpoint_every": "100",
        "log_every": "50", "means_lr": "0.0005", "sh0_lr": "0.01", "scales_lr": "0.01", "init_opacity": "0.3",
        "sky_points": "2000",
    },
    "default": {},
    "quality": {
        "steps": "30000", "strategy": "mcmc", "max_gaussians": "1500000", "refine_stop": "25000",
        "init_opacity": "0.5", "init_scale": "0.1", "opacity_reg": "0.01", "scale_reg": "0.01",
    },
}


def config_for(preset: str | None = None, overrides: dict[str, str] | None = None) -> TrainConfig:
    """The training stage's resolver (:meth:`spaceport.core.stage.StageDef.resolve`): the defaults, then a
    preset's overrides, then ``overrides``."""
    from spaceport.stages.train import STAGE

    return STAGE.resolve(preset or "default", overrides)
