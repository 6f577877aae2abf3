"""The training loop: sparse points -> Gaussians -> gsplat strategy + Adam -> splat.ply and metrics.json.

Read it beside gsplat's ``examples/simple_trainer.py`` (its ``Runner``). :func:`train` is the whole
stage in four lines: :class:`Trainer` sets up in its constructor (device, seeds, views, initial
Gaussians, optimisers, gsplat's strategy), :meth:`~Trainer.resume` continues from a checkpoint,
:meth:`~Trainer.fit` calls :meth:`~Trainer.step` once per image seen, :meth:`~Trainer.evaluate`
measures the held-out views and :meth:`~Trainer.export` writes the outputs. A checkpoint is
:meth:`~Trainer.state_dict`, read back by :meth:`~Trainer.load_state_dict`.

Units: steps are images seen; times in seconds; PSNR in dB; memory in MiB.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaceport.core.config import to_dict, to_strings
from spaceport.core.errors import ConfigInvalid, TrainingDiverged
from spaceport.core.files import atomic_path
from spaceport.core.summaries import HeldOutAtSize, TrainBudget, TrainMetrics, TrainStep, write_summary
from spaceport.geometry.splat import write_ply
from spaceport.local import progress
from spaceport.stages.train.budget import (
    REFIT_EVERY,
    BudgetPlan,
    Schedule,
    downscales,
    refit_steps,
)
from spaceport.stages.train.capture import capture_figures
from spaceport.stages.train.config import TrainConfig
from spaceport.stages.train.data import View, cameras_json, load_model, load_views
from spaceport.stages.train.exposure import Exposure
from spaceport.stages.train.failures import cuda_failure, is_cuda_error, is_oom, out_of_memory
from spaceport.stages.train.gaussians import (
    check_finite,
    enforce_cap,
    init_params,
    initial_points,
    make_optimizers,
    render,
    to_splat,
)
from spaceport.stages.train.metrics import psnr, ssim
from spaceport.stages.train.rasterize import tune_malloc

STAGE = "train"
CHECKPOINT = "checkpoint.pt"
#: A fixed-step CPU run longer than this prints its calibrated estimate and the budget option first.
ESTIMATE_ABOVE_STEPS = 1000
LPIPS_NOTE = "not computed: LPIPS needs pretrained network weights, which are not available offline at run time"


def train(input_dir: Path, out_dir: Path, cfg: TrainConfig, checkpoint_dir: Path | None = None) -> TrainMetrics:
    """Train a splat from ``input_dir`` (sparse model + images) into ``out_dir``; returns metrics.json.

    With ``checkpoint_dir`` a checkpoint is written every ``checkpoint_every`` steps, and one made with
    the same options is resumed from: a killed run started again gives the same splat.
    """
    started = time.perf_counter()
    plan = None
    if cfg.runtime.minutes:  # a time budget: calibrate the step cost here and choose what fits
        from spaceport.stages.train.calibrate import plan_budget

        cfg, plan = plan_budget(Path(input_dir), cfg, pick_device(cfg), started)
    elif pick_device(cfg).type == "cpu" and cfg.optim.steps > ESTIMATE_ABOVE_STEPS:
        from spaceport.stages.train.calibrate import announce_estimate

        announce_estimate(Path(input_dir), cfg, pick_device(cfg))  # no silent multi-hour start
    trainer = Trainer(Path(input_dir), cfg, checkpoint_dir, budget=plan, started=started)
    trainer.resume()
    trainer.fit()
    return trainer.export(Path(out_dir), trainer.evaluate())


def pick_device(cfg: TrainConfig) -> torch.device:
    """CUDA when asked for or (``auto``) available; MCMC's relocation kernel exists only there."""
    if cfg.runtime.device == "cuda" or (cfg.runtime.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigInvalid("device=cuda but no CUDA GPU is available", "Use device=auto or cpu")
        return torch.device("cuda")
    if cfg.densify.strategy == "mcmc":
        raise ConfigInvalid("strategy=mcmc needs a CUDA GPU (gsplat's relocation kernel)",
                            "Use strategy=default (or the 'fast'/'default' preset) on CPU")
    return torch.device("cpu")


def evaluate_views(params: torch.nn.ParameterDict, views: list[View], sh_degree: int, background: torch.Tensor,
                   exposure: Exposure | None = None, antialiased: bool = False,
                   ) -> tuple[float, float, list[tuple[View, np.ndarray]]]:
    """Mean PSNR and SSIM over ``views`` (rendered images returned too), each render at its photo's
    exposure when ``exposure`` is given."""
    ps, ss, renders = [], [], []
    with torch.no_grad():
        for v in views:
            img, _ = render(params, v, sh_degree, background, antialiased)
            if exposure is not None:
                img = img * exposure.gain(v.name)
            img = img.clamp(0, 1).cpu()
            gt = torch.from_numpy(v.image)
            ps.append(psnr(img, gt))
            ss.append(float(ssim(img, gt)))
            renders.append((v, img.numpy()))
    return float(np.mean(ps)), float(np.mean(ss)), renders


@dataclass(frozen=True)
class Evaluation:
    """The held-out measurement of the final Gaussians, at the SH degree they are exported with."""

    test_psnr: float
    test_ssim: float
    train_psnr: float
    """dB, on up to 8 training views (how far the fit is from what it learned from)."""
    sh_degree: int
    renders: list[tuple[View, np.ndarray]]
    coarse: HeldOutAtSize | None = None
    """The held-out views at the coarsest budget size, when training ran finer."""


class Trainer:
    """One training run. The constructor is the setup; then resume, fit, evaluate, export."""

    def __init__(self, input_dir: Path, cfg: TrainConfig, checkpoint_dir: Path | None = None, *,
                 budget: BudgetPlan | None = None, started: float | None = None) -> None:
        """Setup, in the order the seeded random draws happen: device and seeds, the views, the initial
        Gaussians, their optimisers, gsplat's strategy and its state, the image-order generator.
        ``budget``: a time budget's plan; ``started``: when the stage started (the budget's clock)."""
        self.cfg = cfg
        self.t_start = time.perf_counter() if started is None else started
        #: With a time budget: the plan, and when the loop must stop to leave time for evaluation and export.
        self.budget = budget
        self.deadline = (self.t_start + cfg.runtime.minutes * 60.0 - budget.tail_s) if budget is not None else None
        self.timings: dict[str, float] = {}
        self.device = pick_device(cfg)
        self.malloc_tuned = tune_malloc() if self.device.type == "cpu" else False
        if self.device.type == "cpu" and cfg.runtime.cpu_threads:
            torch.set_num_threads(cfg.runtime.cpu_threads)
        torch.manual_seed(cfg.runtime.seed)
        np.random.seed(cfg.runtime.seed)

        with progress.phase(STAGE, "load", self.timings):
            model = load_model(input_dir / cfg.data.model_dir)
            self.views = load_views(model, input_dir / cfg.data.images_dir, cfg.data.test_every, cfg.data.downscale)
        self.model, self.input_dir = model, input_dir  # the held-out views at the coarsest size reuse them
        cam = next(iter(model.cameras.values()))
        #: the coarsest downscale a budget considers (the size held-out PSNR of every run compares at)
        self.coarse_downscale = downscales(cam.width, cam.height)[0]
        self.train_views = [v for v in self.views if v.split == "train"]
        self.test_views = [v for v in self.views if v.split == "test"] or self.train_views
        centres = np.stack([np.linalg.inv(v.world_to_camera)[:3, 3] for v in self.views])
        self.scene_scale = float(np.linalg.norm(centres - centres.mean(0), axis=1).max() * 1.1) or 1.0

        xyz, rgb = initial_points(model.points.xyz, model.points.rgb, centres, self.scene_scale,
                                  sky=cfg.optim.sky_points, cap=cfg.densify.max_gaussians, seed=cfg.runtime.seed)
        self.params = init_params(xyz, rgb, cfg.optim, self.device)
        self.optimizers = make_optimizers(self.params, cfg.optim, self.scene_scale)
        self.strategy = cfg.densify.build()
        self.strategy.check_sanity(self.params, self.optimizers)
        self.strategy_state = (self.strategy.initialize_state(scene_scale=self.scene_scale)
                               if cfg.densify.strategy == "default" else self.strategy.initialize_state())
        self.gen = torch.Generator().manual_seed(cfg.runtime.seed)  # the order the images are visited in
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        self.images = {v.name: torch.from_numpy(v.image).to(self.device) for v in self.train_views}
        self.exposure = (Exposure.of({v.name: v.exposure for v in self.views}, {v.name: v.camera for v in self.views},
                                     [v.name for v in self.train_views], self.device)
                         if cfg.optim.exposure else None)
        self.background = torch.full((3,), 1.0 if cfg.data.background == "white" else 0.0, device=self.device)
        #: the step count, the positions' learning rate decay, the end of refinement and the SH bands
        self.schedule = Schedule.start(cfg.optim.steps, cfg.optim.learning_rates(self.scene_scale)["means"],
                                       cfg.densify.refine_stop, cfg.optim.sh_degree_interval)
        self.checkpoint = checkpoint_dir / CHECKPOINT if checkpoint_dir else None

        # The run's progress: with the tensors above, what a checkpoint holds.
        self.steps_done = 0
        self.order: list[int] = []  # the epoch in progress: indices of the training views still to visit
        self.history: list[TrainStep] = []  # metrics.json's curve: every progress line, kept across a resume
        self.prior_seconds = 0.0  # spent before the checkpoint this run resumed from
        self.resumed_from: int | None = None
        self.stopped_early = False
        self.loop_steps = 0  # steps this process ran (seconds_per_step)
        self.phase, self.at_step = "start", 0  # what step() is doing and at which step: a CUDA failure's record

    # ---- checkpoints ----
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit, tensors on the CPU."""
        state = {
            "step": self.steps_done, "order": list(self.order), "config": to_dict(self.cfg),
            "schedule": self.schedule,
            "seconds": self.seconds(), "history": [p.model_dump(exclude_none=True) for p in self.history],
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": {k: (v.cpu() if isinstance(v, torch.Tensor) else v)
                               for k, v in self.strategy_state.items()},
            "rng": torch.get_rng_state(), "gen": self.gen.get_state(),
        }
        if self.device.type == "cuda":  # MCMC's relocation and noise draw on the GPU's generator
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        if self.exposure is not None:
            state["exposure"] = self.exposure.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (made with the same options)."""
        for name, value in state["params"].items():
            self.params[name] = torch.nn.Parameter(value.to(self.device))
        self.optimizers = make_optimizers(self.params, self.cfg.optim, self.scene_scale)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.strategy_state = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v)
                               for k, v in state["strategy_state"].items()}
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.gen.set_state(state["gen"])
        if self.exposure is not None and "exposure" in state:
            self.exposure.load_state_dict(state["exposure"])
        self.steps_done, self.prior_seconds = int(state["step"]), float(state["seconds"])
        self._set_schedule(state["schedule"])
        self.order, self.history = list(state["order"]), [TrainStep(**p) for p in state["history"]]

    def save_checkpoint(self) -> None:
        """Write :meth:`state_dict` to ``checkpoint_dir`` (atomically: a kill never leaves half a file)."""
        assert self.checkpoint is not None
        check_finite(self.params, self.steps_done)
        with atomic_path(self.checkpoint) as tmp:
            torch.save(self.state_dict(), tmp)

    def resume(self) -> bool:
        """Load the checkpoint if there is one made with the same options (``steps`` may differ)."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        saved = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        if not _same_options(saved["config"], self.cfg):
            progress.emit(STAGE, phase="resume", skipped="options_differ")
            return False
        self.load_state_dict(saved)
        self.resumed_from = self.steps_done
        progress.emit(STAGE, phase="resume", step=self.steps_done)
        return True

    # ---- optimisation ----
    def step(self) -> tuple[float, torch.Tensor, torch.Tensor]:
        """One optimisation step on the next training view; returns the loss, the render and its target.

        simple_trainer's loop body: render, L1 + D-SSIM loss, the strategy's pre-backward hook,
        backward, Adam, the strategy's post-backward hook (densify, prune or relocate).
        """
        step = self.steps_done  # 0-based, as gsplat's strategies count
        self.at_step = step + 1
        view = self._next_view()
        gt = self.images[view.name]
        means_lr = self.schedule.means_lr(step)
        for group in self.optimizers["means"].param_groups:
            group["lr"] = means_lr

        self.phase = "rasterize"
        img, info = render(self.params, view, self.sh_degree_at(step), self.background, self.cfg.optim.antialiased)
        if self.exposure is not None:
            img = img * self.exposure.gain(view.name)
        loss = self.loss(img, gt)
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
        self.phase = "backward"
        loss.backward()
        loss_value = float(loss.detach())  # the step's one host sync, after backward as in simple_trainer
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"The loss became {loss_value} at step {step + 1}; no splat was written",
                                   step=step + 1)
        self.phase = "optimizer"
        self._drop_nonfinite_grads()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.exposure is not None:
            self.exposure.step()
        self.phase = "densify"
        self._densify(step, info, means_lr)
        self.steps_done = step + 1
        return loss_value, img.detach(), gt

    def _drop_nonfinite_grads(self) -> None:
        """Zero the gradient entries that are not finite, so those Gaussians skip this step's update.

        The projection's backward can overflow for a single Gaussian in a degenerate pose (seen on
        monstree at step 408: one far Gaussian's means, scales and quats got Inf/NaN gradients while
        the compositor's gradients were finite and the loss was 0.05), and one NaN in Adam's state
        poisons that Gaussian for good and fails the run at its end. A real divergence still shows
        in the loss (:class:`TrainingDiverged`)."""
        for p in self.params.values():
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)

    def loss(self, img: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """(1 - λ) L1 + λ D-SSIM, plus the opacity and scale regularisers MCMC uses."""
        o = self.cfg.optim
        loss = (1 - o.ssim_lambda) * torch.abs(img - gt).mean() + o.ssim_lambda * (1 - ssim(img, gt))
        if o.opacity_reg:
            loss = loss + o.opacity_reg * torch.sigmoid(self.params["opacities"]).mean()
        if o.scale_reg:
            loss = loss + o.scale_reg * torch.exp(self.params["scales"]).mean()
        return loss

    def fit(self) -> None:
        """:meth:`step` until ``steps``, or until the held-out PSNR reaches ``target_psnr``: a progress
        line every ``log_every`` steps and a checkpoint every ``checkpoint_every``."""
        rt = self.cfg.runtime
        start, t_loop = self.steps_done, time.perf_counter()
        t_log, at_log = t_loop, start  # the rate since the last progress line feeds the ETA
        t_fit, at_fit = t_loop, start  # and the rate since the last look at the schedule, the re-fit
        try:
            while self.steps_done < self.schedule.steps:
                loss, img, gt = self.step()
                done = self.steps_done
                now = time.perf_counter()
                if self.deadline is not None and now - t_fit >= REFIT_EVERY * rt.minutes * 60.0:
                    self._refit(done, (now - t_fit) / max(1, done - at_fit), now)
                    t_fit, at_fit = now, done
                if done % rt.log_every == 0 or done == self.schedule.steps:
                    rate = (now - t_log) / max(1, done - at_log)  # s per step, lately
                    t_log, at_log = now, done
                    self._log(done, loss, psnr(img, gt), eta_s=self._eta(done, rate, now))
                if self._reached_target(done):
                    self.stopped_early = True
                    break
                steps = self.schedule.steps
                if self.deadline is not None and done < steps and time.perf_counter() >= self.deadline:
                    self.stopped_early = True  # out of time: evaluate and export what there is
                    progress.emit(STAGE, phase="deadline", step=done, minutes=rt.minutes)
                    break
                if self.checkpoint and rt.checkpoint_every and done % rt.checkpoint_every == 0 and done < steps:
                    self.save_checkpoint()
        except (RuntimeError, MemoryError) as exc:
            if is_oom(exc):
                raise out_of_memory(exc, len(self.params["means"]), self.cfg.densify.max_gaussians,
                                    self.cfg.data.downscale) from exc
            if is_cuda_error(exc):
                raise cuda_failure(exc, self.at_step, self.phase) from exc
            raise
        self.timings["optimise"] = round(time.perf_counter() - t_loop, 3)
        self.loop_steps = self.steps_done - start
        check_finite(self.params, self.steps_done)

    # ---- evaluation and export ----
    def evaluate(self) -> Evaluation:
        """Held-out PSNR and SSIM at the SH degree the splat is exported with (fewer bands when it
        stopped early, before all were switched on)."""
        sh = self.sh_degree_at(self.steps_done) if self.stopped_early else self.cfg.optim.sh_degree
        with progress.phase(STAGE, "evaluate", self.timings):
            aa = self.cfg.optim.antialiased
            test_psnr, test_ssim, renders = evaluate_views(self.params, self.test_views, sh, self.background,
                                                           self.exposure, aa)
            train_psnr, _, _ = evaluate_views(self.params, self.train_views[:8], sh, self.background, self.exposure, aa)
            coarse = self._evaluate_coarse(sh)
        if not math.isfinite(test_psnr):
            raise TrainingDiverged(f"The held-out renders are not finite at step {self.steps_done}; "
                                   "no splat was written")
        return Evaluation(test_psnr, test_ssim, train_psnr, sh, renders, coarse)

    def _evaluate_coarse(self, sh: int) -> HeldOutAtSize | None:
        """The held-out views at :attr:`coarse_downscale` when training ran finer (metrics.json's
        ``held_out_coarse``)."""
        cfg = self.cfg
        if not cfg.data.test_every or cfg.data.downscale >= self.coarse_downscale:
            return None
        views = [v for v in load_views(self.model, self.input_dir / cfg.data.images_dir, cfg.data.test_every,
                                       self.coarse_downscale) if v.split == "test"]
        if not views:
            return None
        p, s, _ = evaluate_views(self.params, views, sh, self.background, self.exposure, cfg.optim.antialiased)
        return HeldOutAtSize(width=views[0].width, height=views[0].height, downscale=self.coarse_downscale,
                             psnr=round(p, 4), ssim=round(s, 5))

    def export(self, out_dir: Path, evaluation: Evaluation) -> TrainMetrics:
        """Write splat.ply, cameras.json, renders/ and metrics.json; clear the checkpoint (finished)."""
        with progress.phase(STAGE, "export", self.timings):
            out_dir.mkdir(parents=True, exist_ok=True)
            splat = to_splat(self.params, self.cfg.optim.antialiased)
            if evaluation.sh_degree < self.cfg.optim.sh_degree:
                splat = splat.with_sh_degree(evaluation.sh_degree)
            ply_bytes = write_ply(splat, out_dir / "splat.ply")
            write_summary(cameras_json(self.views), out_dir)
            write_renders(out_dir / "renders", evaluation.renders)
        metrics = self._metrics(evaluation, len(splat), splat.sh_degree, ply_bytes)
        write_summary(metrics, out_dir)
        self._clear_checkpoint(out_dir)
        progress.emit(STAGE, final=1, test_psnr=round(evaluation.test_psnr, 3),
                      test_ssim=round(evaluation.test_ssim, 4), num_gaussians=len(splat), seconds=metrics.seconds["total"])
        return metrics

    # ---- helpers ----
    def _eta(self, done: int, rate: float, now: float) -> float:
        """Seconds until the loop ends. With a budget: the remaining steps at the recent rate, made
        dearer by the Gaussians still to come (the plan's calibration), never past the deadline, plus
        the expected evaluation and export."""
        eta = rate * (self.schedule.steps - done)
        if self.budget is None or self.deadline is None:
            return eta
        eta *= self.budget.growth_ahead(done, len(self.params["means"]), self.schedule.steps)
        return max(0.0, min(eta, self.deadline - now)) + self.budget.tail_s

    def _refit(self, done: int, rate: float, now: float) -> None:
        """With a budget: re-fit the schedule to the steps that fit by the deadline at the pace seen
        since the last look (made dearer by the Gaussians still to come) when the deadline would cut it
        or many more would fit (:func:`~spaceport.stages.train.budget.refit_steps`; never past
        ``EPOCHS`` passes). A machine slower than calibrated (other work on it, a costlier scene)
        still gets an annealed, fully refined splat by the deadline, and a faster one uses its time."""
        if self.budget is None or self.deadline is None or done >= self.schedule.steps:
            return
        step_s = rate * self.budget.growth_ahead(done, len(self.params["means"]), self.schedule.steps)
        fits = refit_steps(done, self.schedule.steps, self.deadline - now, step_s, self.budget.max_steps)
        if fits is None:
            return
        self._set_schedule(self.schedule.refit(done, fits, self.cfg.optim.sh_degree))
        progress.emit(STAGE, phase="refit", step=done, steps=self.schedule.steps, step_s=round(step_s, 4))

    def _set_schedule(self, schedule: Schedule) -> None:
        self.schedule = schedule
        if hasattr(self.strategy, "refine_stop_iter"):  # gsplat's strategies read it at every step
            self.strategy.refine_stop_iter = schedule.refine_stop

    def sh_degree_at(self, step: int) -> int:
        """SH bands switched on at ``step`` (the schedule's interval)."""
        return self.schedule.sh_degree(step, self.cfg.optim.sh_degree)

    def seconds(self) -> float:
        """Wall-clock seconds of the run so far, including those before a resume."""
        return self.prior_seconds + time.perf_counter() - self.t_start

    def _next_view(self) -> View:
        if not self.order:  # a new epoch: every training view once, in a seeded random order
            self.order = torch.randperm(len(self.train_views), generator=self.gen).tolist()
        return self.train_views[self.order.pop(0)]

    def _densify(self, step: int, info: dict[str, Any], means_lr: float) -> None:
        params, opts, state = self.params, self.optimizers, self.strategy_state
        if self.cfg.densify.strategy == "mcmc":
            self.strategy.step_post_backward(params, opts, state, step, info, lr=means_lr)
            return
        # DefaultStrategy reads the screen-space gradient (nothing visible from this view: none); MCMC never
        # retains it, and reading .grad of that non-leaf only draws a warning (seen on the GPU run)
        if info["means2d"].grad is None:
            info["means2d"].grad = torch.zeros_like(info["means2d"])
        self.strategy.step_post_backward(params, opts, state, step, info, packed=False)
        enforce_cap(params, opts, state, self.cfg.densify.max_gaussians)

    def _log(self, done: int, loss: float, step_psnr: float, eta_s: float) -> None:
        point = TrainStep(step=done, loss=round(loss, 5), psnr=round(step_psnr, 3),
                          num_gaussians=len(self.params["means"]))
        self.history.append(point)
        progress.emit(STAGE, **point.model_dump(exclude_none=True), eta_s=round(eta_s, 1))

    def _reached_target(self, done: int) -> bool:
        """Every ``eval_every`` steps with a ``target_psnr``: is the held-out PSNR there yet?"""
        rt = self.cfg.runtime
        if rt.target_psnr is None or done % rt.eval_every or done >= self.schedule.steps:
            return False
        test_psnr, _, _ = evaluate_views(self.params, self.test_views, self.sh_degree_at(done), self.background,
                                         self.exposure, self.cfg.optim.antialiased)
        self.history.append(TrainStep(step=done, test_psnr=round(test_psnr, 3)))
        progress.emit(STAGE, **self.history[-1].model_dump(exclude_none=True))
        return test_psnr >= rt.target_psnr

    def _metrics(self, ev: Evaluation, gaussians: int, sh_degree: int, ply_bytes: int) -> TrainMetrics:
        cfg, views = self.cfg, self.views
        return TrainMetrics(
            test_psnr=round(ev.test_psnr, 4), test_ssim=round(ev.test_ssim, 5), lpips=None, lpips_note=LPIPS_NOTE,
            train_psnr=round(ev.train_psnr, 4), num_gaussians=gaussians, steps=self.steps_done,
            stopped_early=self.stopped_early, target_psnr=cfg.runtime.target_psnr, sh_degree=sh_degree,
            held_out=[v.name for v in views if v.split == "test"] if cfg.data.test_every else [],
            evaluated_on="test" if cfg.data.test_every else "train (no images held out: test_every=0)",
            train_images=len(self.train_views), width=views[0].width, height=views[0].height,
            splat_bytes=ply_bytes, device=self.device.type, strategy=cfg.densify.strategy,
            resumed_from_step=self.resumed_from or None, malloc_tuned=self.malloc_tuned,
            seconds={**self.timings, "total": round(self.seconds(), 3)},
            seconds_per_step=round(self.timings["optimise"] / max(1, self.loop_steps), 4),
            peak_memory_mb=round(progress.peak_rss_mb(), 1),
            peak_cuda_memory_mb=(round(torch.cuda.max_memory_allocated() / 2**20, 1)
                                 if self.device.type == "cuda" else None),
            budget=None if self.budget is None else TrainBudget(
                minutes=cfg.runtime.minutes, expected_s=round(self.budget.expected_s, 1),
                planned_steps=cfg.optim.steps,
                refitted_steps=self.schedule.steps if self.schedule.steps != cfg.optim.steps else None,
                stopped_at_deadline=self.stopped_early and self.steps_done < self.schedule.steps
                and cfg.runtime.target_psnr is None),
            capture=capture_figures(self.views), exposure=self.exposure.fit() if self.exposure else None,
            held_out_coarse=ev.coarse,
            config=to_strings(cfg), history=self.history)

    def _clear_checkpoint(self, out_dir: Path) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.unlink(missing_ok=True)  # finished: a later run with the same options starts afresh
        folder = self.checkpoint.parent
        if folder.parent == out_dir and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # the local default (OUT/checkpoints) leaves no empty folder behind


def _same_options(saved: dict[str, Any], cfg: TrainConfig) -> bool:
    """A checkpoint is reused only if it was made with the same options (the step count may differ)."""
    now = to_dict(cfg)
    return {k: v for k, v in saved.items() if k != "steps"} == {k: v for k, v in now.items() if k != "steps"}


def write_renders(folder: Path, renders: list[tuple[View, np.ndarray]]) -> None:
    """``<stem>_render.png`` beside ``<stem>_gt.png`` for every held-out view."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    for view, img in renders:
        stem = Path(view.name).with_suffix("").as_posix().replace("/", "_")
        PILImage.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(folder / f"{stem}_render.png")
        PILImage.fromarray((view.image * 255 + 0.5).astype(np.uint8)).save(folder / f"{stem}_gt.png")
