"""Training to a time budget: which resolution, step count and Gaussian cap fit N minutes here.

Pure (stdlib only): the choice is made from numbers, so it is tested without torch and the
plan/CLI can state the defaults. The numbers come from :mod:`spaceport.stages.train.calibrate`, which
times a few real optimisation steps of the capture on this machine at each candidate
resolution, with the initial Gaussians and with four times as many. A step's cost is close to
linear in the Gaussian count at a fixed image size (projection and per-tile compositing both
scale with it), so each probe is a line ``seconds = fixed + per_gaussian * N``.

The rule, for a budget of ``B`` seconds of training wall time:

1. Time left for the loop: ``B`` minus what calibration and loading took, minus the expected
   evaluation and export (a held-out render costs about a third of a step), times ``FILL``
   (the loop also stops at the deadline, so a slow step costs quality, never time).
2. At each resolution (coarsest first) and each Gaussian cap (smallest first), the run's cost
   assumes each refinement round (:class:`Refinement`) multiplies the count by ``GROWTH_PER_ROUND``
   up to the cap, and that it stays there once refinement ends: affordable steps follow.
3. Pick the finest resolution where the smallest cap that gives a Gaussian for every
   ``PIXELS_PER_GAUSSIAN`` pixels of a training image (caps go up to ``GAUSSIANS_PER_VIEW`` per
   training image) affords ``RESOLUTION_EPOCHS`` passes over the training images; at that
   resolution, the largest cap that still affords ``EPOCHS``. With too little time for that
   anywhere: the coarsest resolution and the smallest cap.
4. Fill the time left with steps, but never schedule more than ``EPOCHS`` passes: a capture with
   few photos finishes before its budget, and the plan says so when it starts.

More views seen more often beat more pixels seen rarely, up to ``RESOLUTION_EPOCHS``: resolution
rises once they fit at the finer size, and only as far as the Gaussians the photos can constrain
can use its pixels; the rest of the time buys passes up to ``EPOCHS``, and Gaussians only as far
as the photos can constrain them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Share of the loop's time the planned steps are meant to fill (the rest absorbs calibration error).
FILL = 0.9
#: The most passes over the training images a plan schedules; between ``RESOLUTION_EPOCHS`` and these
#: the plan buys steps with the time left at its size. Held-out PSNR, fixed-step runs at the plan's
#: schedule, seeds 0 / 1 (``bench/results/train_budget.md``): fountain-P11 (9 training photos, 399x265)
#: 22.24 / 23.09 dB at 50 passes, 24.03 / 24.44 at 150 (its extrapolated view 0000: 18.35 / 20.44, then
#: 22.46 / 23.31); herzjesu-P8 (7, 399x266) 19.06 / 18.95 at 50, 18.55 / 19.26 at 150 (SSIM 0.644 /
#: 0.645, then 0.674 / 0.673); monstree (20, 149x199) 22.13 / 22.47 at 50 and 22.31 / 22.24 at 100.
#: (Before growth within the cap, exposure matching and antialiasing, fountain's held-out PSNR fell
#: past 56 passes.)
EPOCHS = 150
#: Passes a plan must afford at a finer resolution (with the smallest cap) before it trains there. At
#: 50 passes, twice the side, held-out PSNR measured at the coarser size: monstree (1,000 steps, six
#: runs) 22.59-22.89 dB at 298x398 against 22.13-22.49 at 149x199 (five); herzjesu-P8 18.83 against
#: 18.47-18.56. The other way: fountain-P11 (2 held-out views) 22.24-23.09 against 23.15-24.00, the demo
#: 28.05 against 29.71 (rendering an antialiased splat smaller than it was trained fades its sub-pixel
#: Gaussians: the demo's finer render, box-downscaled, scored 30.53 against 29.22 on one view).
RESOLUTION_EPOCHS = 50
#: A finer size is trained only with at least one Gaussian for every this many pixels of a training
#: image (under the cap ``GAUSSIANS_PER_VIEW`` allows). Held-out PSNR, the finer size's run against the
#: coarser one's (fountain-P11 and herzjesu-P8 at each run's own size, the others at the coarser size;
#: ``bench/results/train_budget.md``): where the cap gave one
#: Gaussian per 5-8 pixels the finer size lost every time (fountain-P11 and herzjesu-P8 at 799x531, 60,000
#: Gaussians, 7.1 pixels each: 22.87 against 23.77 dB, 18.57 against 19.04; monstree at 597x797, 7.9: 22.59
#: against 23.01; the demo at 640x480, 5.1: 26.24 against 28.05); at 1.8-2.0 pixels it won (monstree at
#: 298x398: 22.59-23.01 against 22.13-22.49; herzjesu-P8 at 399x266: 18.83 against 18.47-18.56).
PIXELS_PER_GAUSSIAN = 3
#: Most Gaussians per training image a plan's cap allows (never below ``CAP_RANGE[0]``): monstree's 20
#: photos at 150,000 gave 21.11 dB against 21.43 at 60,000 (1,500 steps each), and cost twice the time.
#: With antialiasing, 1,000 steps, seeds 0 / 1: 120,000 gave 22.21 / 22.04 dB against 22.13 / 22.47 at
#: 149x199; at 298x398 (measured at 149x199) 22.61-22.95 in three runs against 22.59-22.89 in six, for
#: 40% more time.
GAUSSIANS_PER_VIEW = 3_000
#: Gaussian caps tried, as multiples of the initial count, bounded by ``CAP_RANGE``.
#: The floor is the `fast` preset's cap: with 30,000 both monstree budget runs hit the cap (fast's own
#: run grows to ~30,300 under its 60,000), so a lower one only takes away what fast already has.
CAP_FACTORS = (2, 4, 8, 16, 32)
CAP_RANGE = (60_000, 1_500_000)
#: Refinement (densification) ends at this share of the steps; the rest fits what exists.
REFINE_STOP = 0.7
#: Each refinement round of a budgeted run multiplies the Gaussian count by about this much until the
#: cap (growth takes the Gaussians whose gradient was high since the last round, each adds one).
#: Fitted to the count's path in nine budgeted runs (monstree, fountain-P11, herzjesu-P8 and the demo;
#: 350-1,050 steps, a round every 25-26 steps; 1.15-1.59 a round, slowing near the cap): the mean count
#: over each run comes out at 0.89-1.15 times the measured, where growing linearly to the cap over
#: refinement gave 0.84-1.38 (too little for 1,000 steps, which reach the cap by a quarter of the run,
#: too much for 350, which reach it near refinement's end; ``bench/train_growth.py``).
GROWTH_PER_ROUND = 1.4
#: The positions' learning rate decays geometrically to this share of its start by the last step.
LR_END = 0.01
#: A running budget extends its schedule when more than this share more steps fit than it has (it
#: shortens it as soon as the deadline would cut it: :func:`refit_steps`).
REFIT_TOLERANCE = 0.1
#: A running budget compares its pace with the schedule every this share of the budget.
REFIT_EVERY = 0.05
#: Share of the time left that a re-fitted schedule fills (the pace is measured, not predicted, by then).
REFIT_FILL = 0.95
#: Smallest longest side in pixels a candidate resolution may have: the `fast` preset trains the
#: captures here at 150-250 px (downscale 4), so the coarsest candidate is what `fast` uses.
MIN_LONG_SIDE = 150
#: What a held-out or training-view evaluation render (with its PSNR and SSIM) costs, as a share of a
#: training step (measured on the demo scene: 2.2 s per view against 3.6 s per step, busy machine).
EVAL_COST = 0.6
#: A fixed-step run's estimate assumes refinement grows the splat to at most this many times its
#: start (or the cap): the default preset's 1.5M cap is far above what 7,000 CPU steps reach.
PEAK_GROWTH = 16
#: On a machine without CUDA a run with no preset and no --minutes trains this long (minutes).
DEFAULT_CPU_MINUTES = 10.0


@dataclass(frozen=True)
class Probe:
    """Measured cost of one training step at one resolution: ``fixed + per_gaussian * N`` seconds."""

    downscale: int
    width: int
    height: int
    fixed_s: float
    per_gaussian_s: float
    load_s: float = 0.0
    """Seconds to load the images at this size (training loads them again once the plan is made)."""

    def step_seconds(self, gaussians: float) -> float:
        return max(self.fixed_s + self.per_gaussian_s * gaussians, 1e-6)


@dataclass(frozen=True)
class Capture:
    """What the capture brings to training."""

    train_images: int
    test_images: int
    start_gaussians: int
    """Sparse points (plus sky points) the splat starts from."""


@dataclass(frozen=True)
class BudgetPlan:
    """What the budget bought: the options to train with and what they should cost."""

    budget_s: float
    downscale: int
    width: int
    height: int
    steps: int
    max_gaussians: int
    loop_s: float
    """Expected seconds of the optimisation loop."""
    tail_s: float
    """Expected seconds of the final evaluation and export."""
    spent_s: float
    """Seconds already spent (loading, calibration) when the plan was made."""
    epochs: float
    probe: Probe | None = None
    """The calibration the plan rests on (its resolution's)."""
    max_steps: int | None = None
    """The most steps a re-fit may extend the run to (``EPOCHS`` passes); None: no limit."""

    @property
    def finishes_early(self) -> bool:
        """True when ``EPOCHS`` passes end the run well before its budget (little to gain from the rest)."""
        return self.max_steps is not None and self.steps >= self.max_steps and \
            self.expected_s < REFIT_FILL * (self.budget_s - self.tail_s)

    @property
    def expected_s(self) -> float:
        """Expected wall seconds of the whole training stage."""
        return self.spent_s + self.loop_s + self.tail_s

    def growth_ahead(self, step: int, gaussians: int, steps: int | None = None) -> float:
        """How much dearer the remaining steps are than the current ones, as the count grows to the cap
        in the refinement rounds still to come (the rate measured so far does not see that growth).
        ``steps``: the run's step count now (a re-fitted schedule's, which ends refinement at
        ``REFINE_STOP`` of it), the plan's by default."""
        steps = self.steps if steps is None else steps
        if step >= steps or gaussians >= self.max_gaussians or self.probe is None:
            return 1.0
        refine = replace(Refinement.for_steps(self.steps), stop=int(steps * REFINE_STOP))
        ahead = refine.seconds(self.probe, step, gaussians, self.max_gaussians, steps) / (steps - step)
        return max(1.0, ahead / self.probe.step_seconds(gaussians))

    def options(self, sh_degree: int) -> dict[str, str]:
        """Train options (as strings, like every option source) for this plan: the size, the
        step count and the refinement schedule scaled to it."""
        s = self.steps
        refine = Refinement.for_steps(s)
        return {
            "downscale": str(self.downscale), "steps": str(s), "max_gaussians": str(self.max_gaussians),
            "refine_start": str(refine.start), "refine_stop": str(refine.stop),
            "refine_every": str(refine.every), "reset_every": str(3000 if s >= 6000 else 0),
            "sh_degree_interval": str(sh_interval(s, sh_degree)),
            "log_every": str(max(10, s // 50)), "eval_every": str(max(1, s)),
            "checkpoint_every": str(max(100, s // 10)),
        }


@dataclass(frozen=True)
class Refinement:
    """When refinement rounds run (gsplat's DefaultStrategy's rule): at each multiple of ``every``
    after step ``start`` and before ``stop``. A round at step ``r`` follows that step's backward pass, so
    the grown count renders from step ``r + 1``."""

    start: int
    every: int
    stop: int

    @classmethod
    def for_steps(cls, steps: int) -> Refinement:
        """A budgeted run's refinement, scaled to its ``steps``."""
        return cls(start=int(min(500, max(50, steps // 10))), every=int(min(100, max(25, steps // 40))),
                   stop=int(steps * REFINE_STOP))

    def rounds(self, first: int, end: int) -> range:
        """The steps from ``first`` to ``end`` (exclusive) that a round follows."""
        r = -(-max(first, self.start + 1) // self.every) * self.every
        return range(r, max(r, min(end, self.stop)), self.every)

    def counts(self, step: int, count: float, cap: int, end: int) -> list[tuple[int, float]]:
        """The expected Gaussian count of each step from ``step`` to ``end`` (exclusive), as runs of
        ``(steps, count)``: ``count`` now, ``GROWTH_PER_ROUND`` times more after each round, at most ``cap``."""
        runs: list[tuple[int, float]] = []
        for r in self.rounds(step, end):
            if count >= cap:
                break
            runs.append((r + 1 - step, count))
            step, count = r + 1, min(float(cap), count * GROWTH_PER_ROUND)
        runs.append((end - step, count))
        return [(n, c) for n, c in runs if n > 0]

    def seconds(self, probe: Probe, step: int, count: float, cap: int, end: int) -> float:
        """Expected seconds of the steps from ``step`` to ``end`` at ``probe``'s cost (:meth:`counts`)."""
        return sum(n * probe.step_seconds(c) for n, c in self.counts(step, count, cap, end))


def loop_seconds(steps: int, probe: Probe, start: int, cap: int) -> float:
    """Expected seconds of a budgeted run's ``steps`` steps that start from ``start`` Gaussians under ``cap``."""
    return Refinement.for_steps(steps).seconds(probe, 0, start, cap, steps)


@dataclass(frozen=True)
class Schedule:
    """What changes with the step count during a run: the last step, the positions' learning rate (a
    geometric decay to ``LR_END`` of its start at the last step), the end of refinement and the SH
    band interval. A budgeted run re-fits it (:meth:`refit`) when the machine's pace differs from the
    calibration's, so the learning rate still anneals and refinement still ends before the deadline,
    instead of the run being cut off mid-schedule."""

    steps: int
    lr_step: int
    """The step :attr:`lr_at_step` holds at: the decay runs from there to :attr:`steps`."""
    lr_at_step: float
    lr_end: float
    refine_stop: int
    sh_interval: int

    @classmethod
    def start(cls, steps: int, means_lr: float, refine_stop: int, sh_interval: int) -> Schedule:
        return cls(steps=steps, lr_step=0, lr_at_step=means_lr, lr_end=means_lr * LR_END,
                   refine_stop=refine_stop, sh_interval=sh_interval)

    def means_lr(self, step: int) -> float:
        """The positions' learning rate at ``step`` (0-based)."""
        span = max(1, self.steps - self.lr_step)
        return self.lr_at_step * (self.lr_end / self.lr_at_step) ** ((step - self.lr_step) / span)

    def sh_degree(self, step: int, top: int) -> int:
        """SH bands switched on at ``step``: one more every :attr:`sh_interval` steps, up to ``top``."""
        return min(step // self.sh_interval, top)

    def refit(self, done: int, steps: int, sh_top: int) -> Schedule:
        """The schedule for ``steps`` in all with ``done`` of them behind: the learning rate decays from
        where it is to the end in the steps left, refinement ends at ``REFINE_STOP`` of the new count
        unless it already has, and SH bands never switch off."""
        steps = max(done + 1, steps)
        refine_stop = self.refine_stop if done >= self.refine_stop else max(done, int(steps * REFINE_STOP))
        interval = sh_interval(steps, sh_top)
        if min(done // interval, sh_top) < self.sh_degree(done, sh_top):
            interval = self.sh_interval
        return Schedule(steps=steps, lr_step=done, lr_at_step=self.means_lr(done), lr_end=self.lr_end,
                        refine_stop=refine_stop, sh_interval=interval)


def sh_interval(steps: int, sh_degree: int) -> int:
    """Steps between SH bands in a budgeted run: every band is on by half the run."""
    return max(50, steps // (2 * max(1, sh_degree)))


def steps_that_fit(done: int, seconds_left: float, step_s: float) -> int:
    """The step count a run can reach by its deadline at ``step_s`` seconds a step (``REFIT_FILL``)."""
    return done + int(max(0.0, seconds_left) * REFIT_FILL / max(step_s, 1e-6))


def refit_steps(done: int, steps: int, seconds_left: float, step_s: float, max_steps: int | None = None) -> int | None:
    """The step count a running schedule of ``steps`` (``done`` behind it, ``seconds_left`` to the
    deadline, ``step_s`` a step from here) re-fits to, or None to keep it. Shorter as soon as the
    deadline would cut it, so the learning rate still anneals and the last steps are not lost (a pace
    that drifts slower, as when an SH band switches on, used to stay within a 10% tolerance and be cut
    6% short); longer when ``REFIT_TOLERANCE`` more would fit, never past ``max_steps``."""
    fits = steps_that_fit(done, seconds_left, step_s)
    if max_steps is not None:
        fits = min(fits, max_steps)
    reached = done + int(max(0.0, seconds_left) / max(step_s, 1e-6))
    if steps > reached or fits > steps * (1 + REFIT_TOLERANCE):
        return fits if fits != steps else None
    return None


def steps_in(seconds: float, probe: Probe, start: int, cap: int) -> int:
    """The most steps (at least 1) whose :func:`loop_seconds` fit in ``seconds``."""
    lo, hi = 1, max(2, int(seconds / probe.step_seconds(start)) + 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if loop_seconds(mid, probe, start, cap) <= seconds:
            lo = mid
        else:
            hi = mid
    return lo


def caps(start: int) -> list[int]:
    lo, hi = CAP_RANGE
    return sorted({min(hi, max(lo, f * start)) for f in CAP_FACTORS})


def gaussian_caps(capture: Capture) -> list[int]:
    """The caps a plan may give this capture, smallest first: ``caps`` up to ``GAUSSIANS_PER_VIEW`` per
    training image (at least the smallest)."""
    most = max(CAP_RANGE[0], GAUSSIANS_PER_VIEW * max(1, capture.train_images))
    return [c for c in caps(capture.start_gaussians) if c <= most] or caps(capture.start_gaussians)[:1]


def gaussians_for(width: int, height: int, capture: Capture) -> int | None:
    """The smallest cap that gives a ``width`` x ``height`` training image a Gaussian for every
    ``PIXELS_PER_GAUSSIAN`` pixels; None: more than the capture's photos constrain (not worth training at)."""
    return next((c for c in gaussian_caps(capture) if c * PIXELS_PER_GAUSSIAN >= width * height), None)


def choose(budget_s: float, capture: Capture, probes: list[Probe], spent_s: float = 0.0) -> BudgetPlan:
    """The plan for ``budget_s`` seconds of training (see the module docstring for the rule)."""
    if not probes:
        raise ValueError("choose() needs at least one calibration probe")
    probes = sorted(probes, key=lambda p: p.width * p.height)
    n_train = max(1, capture.train_images)

    most = int(EPOCHS * n_train)

    def plan(p: Probe, cap: int) -> BudgetPlan:
        tail = EVAL_COST * p.step_seconds(cap) * (capture.test_images + min(8, n_train)) + 1.0 + p.load_s
        loop = max(0.0, (budget_s - spent_s - tail) * FILL)
        fits = steps_in(loop, p, capture.start_gaussians, cap)
        steps = min(fits, most)
        loop_s = loop_seconds(steps, p, capture.start_gaussians, cap)
        return BudgetPlan(budget_s=budget_s, downscale=p.downscale, width=p.width, height=p.height, steps=steps,
                          max_gaussians=cap, loop_s=round(loop_s, 1), tail_s=round(tail, 1),
                          spent_s=round(spent_s, 1), epochs=round(fits / n_train, 1), probe=p, max_steps=most)

    options = gaussian_caps(capture)
    best = plan(probes[0], options[0])
    for p in probes[1:]:
        enough = gaussians_for(p.width, p.height, capture)
        if enough is None:
            break
        first = plan(p, enough)
        if first.epochs < RESOLUTION_EPOCHS:
            break
        best = first
    p = next(q for q in probes if q.downscale == best.downscale)
    for cap in (c for c in options if c > best.max_gaussians):
        bigger = plan(p, cap)
        if bigger.epochs < EPOCHS:
            break
        best = bigger
    return replace(best, epochs=round(best.steps / n_train, 1))


def downscales(width: int, height: int) -> list[int]:
    """Candidate downscales for images of this size, coarsest first: powers of two that keep the
    longest side at least ``MIN_LONG_SIDE`` (always 1)."""
    long_side = max(width, height)
    out = [d for d in (16, 8, 4, 2) if long_side / d >= MIN_LONG_SIDE]
    return [*out, 1]


def estimate_s(steps: int, probe: Probe, capture: Capture, cap: int, refine_stop: int) -> float:
    """Expected loop seconds of a fixed-step run (a preset without a budget) from its probe: the
    count grows to ``cap`` until ``refine_stop`` (or the last step), then holds."""
    grow = min(steps, max(1, refine_stop))
    start = capture.start_gaussians
    cap = max(cap, start)
    return grow * probe.step_seconds((start + cap) / 2) + (steps - grow) * probe.step_seconds(cap)


def human(seconds: float) -> str:
    """``2 h 12 min``, ``9 min 30 s``, ``45 s``."""
    if not math.isfinite(seconds):
        return "unknown"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {(s % 3600) // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"
