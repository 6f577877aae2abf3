"""The job report: one self-contained ``index.html`` built from the stage summaries.

Inputs are the stage output folders as the Publish job sees them (``sfm/``, ``train/``,
``compressed/``; ``train/`` may hold SageMaker's ``model.tar.gz`` instead of loose files) and,
when there is one, the job record ``job.json``. Each summary is read through its model
(:mod:`spaceport.core.summaries`): a missing stage gives a note in its section; a summary that does
not validate is an error naming the file. The training curves come from ``metrics.json``'s
history, so a report built from a SageMaker model artifact alone has them. Plots and renders
are embedded as ``data:`` URIs so the page works as a single file, e-mailed or opened from disk.
"""

from __future__ import annotations

import html
import io
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from spaceport.core import graph
from spaceport.core.files import unpack_members, write_atomic
from spaceport.core.graph import stage_def
from spaceport.core.summaries import (
    CamerasFile,
    CompressSummary,
    GateResult,
    JobRecord,
    SfmSummary,
    Summary,
    TrainMetrics,
    read_summary,
)
from spaceport.stages import gate
from spaceport.stages.publish.tables import (
    CSS,
    data_uri,
    details,
    flatten,
    fmt,
    human_bytes,
    safe,
    source_name,
    table,
)
from spaceport.stages.publish.viewer import PASS_QUERY_SCRIPT

#: The Publish job's stage-output channels (the stage graph's), in StageInputs' field order, and
#: its job-record channel.
STAGE_FOLDERS = tuple(i.channel for i in stage_def("publish").inputs if i.form != "record")
RECORD_CHANNEL = next(i.channel for i in stage_def("publish").inputs if i.form == "record")
#: Largest number of held-out render pairs shown (the rest are counted, not shown).
MAX_RENDERS = 6
#: Renders are downscaled to this width (pixels) before embedding.
RENDER_WIDTH = 480
#: Bytes a model.tar.gz may unpack to for the report (its small files: metrics, cameras, renders).
UNPACK_LIMIT = 512 * 1024 * 1024

#: The report is shared by link, so of the job record it shows only these fields (never the
#: source URI, bucket prefix, execution ARN, account id, job names or the user's e-mail).
JOB_FIELDS = ("job_id", "status", "preset", "created_at", "updated_at", "seconds", "cost_usd")
STAGE_FIELDS = ("status", "seconds", "billable_seconds", "cpu_seconds", "peak_memory_mb", "instance_type",
                "cost_usd")


#: How the banner names each missed check (the gate's short form; its failure record has the long one).
_MISSED = {
    "train_views": lambda g: f"{g.train_views} training views, at least {g.min_train_views}",
    "sharpness": lambda g: f"photos blurred (sharpness {g.sharpness:.2f}, at least {g.min_sharpness:g})",
    "held_out_offset": lambda g: f"held-out view {g.held_out_farthest} {g.held_out_offset:.2f} widest training gaps "
                                 f"from the training views, at most {g.max_held_out_offset:g}",
    "psnr_gain": lambda g: f"held-out PSNR only {g.psnr_gain:.2f} dB above the photos' mean colour, at least "
                           f"{g.min_psnr_gain:g} dB (camera poses likely wrong)",
    "psnr": lambda g: f"held-out PSNR {g.test_psnr:.2f} dB, target {g.min_psnr:.2f} dB",
    "gaussians": lambda g: f"{fmt(g.num_gaussians)} Gaussians, cap {fmt(g.max_gaussians)}",
}


def below_target(job: JobRecord | None) -> str | None:
    """One line saying the splat missed the quality gate and by how much, or None when it did not."""
    if job is None or job.quality_gate is None or job.quality_gate.passed:
        return None
    g = job.quality_gate
    misses = [_MISSED[f.check](g) for f in gate.figures(g) if not f.passed]
    return "Below target: " + "; ".join(misses or ["the quality gate failed"])


def _gate_table(g: GateResult) -> str:
    """Every check the gate ran: the figure, its limit, and whether it passed."""
    rows = "".join(f"<tr class={'pass' if f.passed else 'fail'}><td>{html.escape(f.label)}</td>"
                   f"<td>{html.escape(f.figure)}</td><td>{html.escape(f.limit)}</td>"
                   f"<td>{'passed' if f.passed else 'missed'}</td></tr>" for f in gate.figures(g))
    return (f"<table id=gate-figures><tr><th>check</th><th>figure</th><th>limit</th><th></th></tr>"
            f"{rows}</table>")


def _below_target_banner(job: JobRecord, line: str) -> str:
    """The top of a below-target report: what missed, why, and what to do (the gate's failure record)."""
    record = job.stages.get("quality_gate")
    failure = record.failure if record is not None else None
    parts = [f"<h2>{html.escape(line)}</h2>",
             "<p>This splat did not pass the quality gate. It is shown so that you can see what went wrong; "
             "it is not a passing result.</p>"]
    if failure is not None:
        parts.append(f"<p><b>Reason:</b> {html.escape(failure.reason)}</p>")
        parts.append(f"<p><b>Fix:</b> {html.escape(failure.fix)}</p>")
    return f"<div class=below id=below-target role=alert>{''.join(parts)}</div>"


def _dump(summary: Summary | None) -> dict[str, Any]:
    return summary.model_dump(mode="json", by_alias=True) if summary is not None else {}


def job_record_rows(job: JobRecord) -> list[tuple[str, Any]]:
    """The chosen, non-sensitive fields of a job record, as (dotted key, value)."""
    data = job.model_dump(mode="json")
    rows: list[tuple[str, Any]] = [(k, data[k]) for k in JOB_FIELDS if data.get(k) is not None]
    for name, stage in job.stages.items():
        rows += [(f"stages.{name}.{k}", getattr(stage, k)) for k in STAGE_FIELDS if getattr(stage, k) is not None]
        rows += [(f"stages.{name}.{k}", v) for k, v in stage.numbers.items() if v is not None]
        if stage.failure is not None:
            rows += [(f"stages.{name}.{k}", getattr(stage.failure, k)) for k in ("error", "reason", "fix")]
    rows += [(f"metrics.{k}", v) for k, v in job.metrics.items()]
    return safe(rows)


def _shown(rows: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The rows with a value (None: not applicable to this run, e.g. no video, no SPZ)."""
    return safe([(k, v) for k, v in rows if v is not None])


def input_rows(s: SfmSummary) -> list[tuple[str, Any]]:
    """What came in and what ingest made of it."""
    i = s.ingest
    return _shown([("input_kind", s.input_kind), ("input_images", s.input_images), ("usable_images", s.usable_images),
                   ("corrupt_images", s.corrupt_images), ("ingest.downscaled", i.downscaled),
                   ("ingest.exif_rotated", i.exif_rotated), ("ingest.video_rotation", i.video_rotation),
                   ("ingest.frames_decoded", i.frames_decoded), ("ingest.frames_blurry", i.frames_blurry)])


def sfm_rows(s: SfmSummary) -> list[tuple[str, Any]]:
    """The reconstruction's headline numbers."""
    f = s.validation.figures if s.validation is not None else None
    return _shown([
        ("registered_images", s.registered_images), ("registered_fraction", s.registered_fraction),
        ("points", s.points), ("mean_reprojection_error", s.mean_reprojection_error),
        ("mean_track_length", s.mean_track_length), ("matcher", s.matcher), ("mapper", s.mapper),
        ("fallback", s.fallback), ("camera_mode", s.camera_mode), ("cameras", s.cameras),
        ("camera.model", s.camera.model), ("camera.width", s.camera.width), ("camera.height", s.camera.height),
        ("validation.figures.baseline_depth_ratio", f.baseline_depth_ratio if f else None),
        ("validation.figures.median_triangulation_deg", f.median_triangulation_deg if f else None),
        ("validation.figures.pair_agreement", f.pair_agreement if f else None),
        ("peak_memory_mb", s.peak_memory_mb)])


def train_rows(m: TrainMetrics) -> list[tuple[str, Any]]:
    """The training's headline numbers."""
    c = m.held_out_coarse
    return _shown([("test_psnr", m.test_psnr), ("test_ssim", m.test_ssim), ("size", f"{m.width}x{m.height}"),
                   ("held_out_coarse.psnr", c.psnr if c else None), ("held_out_coarse.ssim", c.ssim if c else None),
                   ("held_out_coarse.size", f"{c.width}x{c.height}" if c else None), ("lpips", m.lpips),
                   ("num_gaussians", m.num_gaussians), ("steps", m.steps), ("strategy", m.strategy),
                   ("sh_degree", m.sh_degree), ("device", m.device), ("stopped_early", m.stopped_early),
                   ("peak_memory_mb", m.peak_memory_mb)])


def compress_rows(c: CompressSummary) -> list[tuple[str, Any]]:
    """The compression's headline numbers."""
    q = c.quality.formats if c.quality is not None else {}
    p = c.sh_palette
    rows: list[tuple[str, Any]] = [
        ("input.format", c.input.format), ("input.ply_bytes", c.input.ply_bytes), ("input.bytes", c.input.bytes),
        ("outputs.scene.sog", c.outputs.sog), ("outputs.scene.spz", c.outputs.spz), ("ratio.sog", c.ratio.sog),
        ("ratio.spz", c.ratio.spz), ("gaussians.kept", c.gaussians.kept), ("gaussians.input", c.gaussians.input)]
    for name, measured in q.items():
        rows += [(f"quality.formats.{name}.psnr", measured.psnr), (f"quality.formats.{name}.ssim", measured.ssim)]
    rows.append(("peak_memory_mb", c.peak_memory_mb))
    if p is not None:
        rows += [("sh_palette.entries", p.entries), ("sh_palette.colour_error_levels", p.colour_error_levels),
                 ("sh_palette.max_error_levels", p.max_error_levels), ("sh_palette.target_met", p.target_met),
                 ("sh_palette.note", p.note)]
    return _shown(rows)


def _stage_summary(cls: type[Summary], summary: Any, stage: str, rows: Callable[[Any], list[tuple[str, Any]]],
                   drop: tuple[str, ...] = ()) -> list[str]:
    """A stage's headline table and its full summary folded away, or a note when the stage has not run."""
    if summary is None:
        return [f"<p class=note>No {cls.FILE}: the {stage} stage has not run or its output is missing.</p>"]
    data = {k: v for k, v in _dump(summary).items() if k not in drop}
    return [table(rows(summary)), details(f"all of {cls.FILE}", safe(flatten(data)))]


@dataclass
class StageInputs:
    """The stage folders the report reads; any may be missing."""

    sfm: Path | None = None
    train: Path | None = None
    compressed: Path | None = None
    job_record: Path | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_channels(cls, channels: Mapping[str, Path]) -> StageInputs:
        """The publish stage's input channels (:meth:`spaceport.core.stage.StageDef.inputs_under`); a
        channel whose folder is missing is a stage that has not run."""
        folders = [channels[name] if channels[name].is_dir() else None for name in STAGE_FOLDERS]
        record = channels[RECORD_CHANNEL] / JobRecord.FILE
        return cls(*folders, job_record=record if record.is_file() else None)

    @classmethod
    def from_root(cls, root: Path) -> StageInputs:
        """A folder laid out like the S3 job prefix (sfm/, train/, compressed/, job.json or job/job.json)."""
        return cls.from_channels(stage_def("publish").inputs_under(Path(root)))


def unpack_model(train: Path, scratch: Path) -> Path:
    """When train/ holds only SageMaker's model.tar.gz, extract its small files (not the PLY) into scratch."""
    tar_path = train / "model.tar.gz"
    if (train / TrainMetrics.FILE).exists() or not tar_path.is_file():
        return train
    unpack_members(tar_path, scratch, wanted=lambda name: PurePosixPath(name).suffix != ".ply",
                   max_bytes=UNPACK_LIMIT)
    return scratch


def _optional(cls: type[Summary], folder: Path | None) -> Any:
    """The folder's summary through its model, None when the stage has not run (no such file)."""
    if folder is None or not (folder / cls.FILE).is_file():
        return None
    return read_summary(cls, folder / cls.FILE)


def camera_path_png(sfm: Path | None, train: Path | None) -> tuple[bytes | None, str]:
    """Camera-path plot from the sparse model (or cameras.json); (png, note)."""
    import numpy as np

    from spaceport.geometry.upright import ground_axes, world_up
    from spaceport.stages.publish import plots

    centers = rotations = None
    points = np.zeros((0, 3))
    test_mask = None
    if sfm is not None and (sfm / "sparse" / "0").is_dir():
        from spaceport.geometry.colmap import read_model

        try:
            model = read_model(sfm / "sparse" / "0")
        except Exception as exc:  # a broken model must not break the report
            return None, f"the sparse model could not be read ({type(exc).__name__}: {exc})"
        images = sorted(model.images.values(), key=lambda im: im.name)
        centers = np.array([im.center() for im in images]) if images else None
        rotations = np.array([im.world_to_camera()[:3, :3] for im in images]) if images else None
        points = model.points.xyz if len(model.points) else points
    cams = _optional(CamerasFile, train)
    if centers is None and cams is not None and cams.cameras:
        ordered = sorted(cams.cameras, key=lambda c: c.name)
        w2c = np.array([c.world_to_camera for c in ordered], dtype=np.float64)
        centers = np.einsum("nji,nj->ni", w2c[:, :3, :3], -w2c[:, :3, 3])
        rotations = w2c[:, :3, :3]
        test_mask = [c.split == "test" for c in ordered]
    if centers is None or len(centers) == 0:
        return None, "no camera poses found"
    if cams is not None and test_mask is None:
        split = {c.name: c.split for c in cams.cameras}
        names = sorted(im.name for im in model.images.values())
        test_mask = [split.get(n) == "test" for n in names]
    # Seen from above: the ground plane perpendicular to the up direction the cameras agree on.
    basis = ground_axes(world_up(rotations))
    mean = centers.mean(0)
    c2 = (centers - mean) @ basis.T
    if len(points) > 4000:
        points = points[np.random.default_rng(0).choice(len(points), 4000, replace=False)]
    p2 = (points - mean) @ basis.T if len(points) else np.zeros((0, 2))
    # Keep the plot about the cameras: drop far outlier points.
    if len(p2):
        radius = np.abs(c2).max() * 1.5 + 1e-9
        p2 = p2[(np.abs(p2) <= radius).all(1)]
    png = plots.camera_plot(c2, p2, "Camera path (seen from above)", ("ground axis 1", "ground axis 2"), test_mask)
    return png, ""


def _render_pairs(renders: Path) -> list[tuple[str, list[Path]]]:
    """Group render PNGs into (view, [render, ground truth]) by name; lone images stand alone."""
    files = sorted(p for p in renders.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    groups: dict[str, list[Path]] = {}
    tags = ("_render", "_pred", "_gt", "-render", "-pred", "-gt", "_ground_truth")
    for p in files:
        stem = p.stem
        for t in tags:
            if stem.endswith(t):
                stem = stem[: -len(t)]
                break
        groups.setdefault(stem, []).append(p)

    def order(p: Path) -> int:
        s = p.stem.lower()
        return 1 if ("gt" in s.rsplit("_", 1)[-1] or "ground" in s) else 0

    return [(k, sorted(v, key=order)) for k, v in groups.items()]


def _thumb(path: Path, width: int = RENDER_WIDTH) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, max(1, round(im.height * width / im.width))), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=88)
    return data_uri(buf.getvalue(), "image/jpeg")


def build_report(inputs: StageInputs, out_dir: Path, *, title: str = "Spaceport job report",
                 scratch: Path | None = None) -> Path:
    """Write ``index.html`` into ``out_dir`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = inputs.train
    tmp = None
    if train is not None and not (train / "metrics.json").exists() and (train / "model.tar.gz").is_file():
        if scratch is None:
            tmp = tempfile.TemporaryDirectory(prefix="spaceport-report-")
            scratch = Path(tmp.name)
        train = unpack_model(train, scratch)
    try:
        return _build(inputs, train, out_dir, title)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _curves(metrics: TrainMetrics) -> list[str]:
    """Loss and PSNR against step, from metrics.json's history."""
    from spaceport.stages.publish import plots

    loss = [(p.step, p.loss) for p in metrics.history if p.loss is not None]
    psnr = {"training view": [(p.step, p.psnr) for p in metrics.history if p.psnr is not None],
            "held-out": [(p.step, p.test_psnr) for p in metrics.history if p.test_psnr is not None]}
    psnr = {k: v for k, v in psnr.items() if v}
    out = []
    if loss:
        png = plots.line_plot({"loss": loss}, "Training loss", "step", "loss", log_y=min(v for _, v in loss) > 0)
        out.append(f'<figure><img alt="loss" src="{data_uri(png)}"></figure>')
    if psnr:
        out.append(f'<figure><img alt="psnr" src="{data_uri(plots.line_plot(psnr, "PSNR", "step", "dB"))}"></figure>')
    return out or ["<p class=note>No training curve: metrics.json holds no step history.</p>"]


@dataclass(frozen=True)
class _Read:
    """The summaries the report is built from (None: that stage has not run)."""

    sfm: SfmSummary | None
    met: TrainMetrics | None
    cmp: CompressSummary | None
    job: JobRecord | None


def _header(r: _Read, out_dir: Path, inputs: StageInputs, title: str) -> list[str]:
    sfm, met, cmp, job = r.sfm, r.met, r.cmp, r.job
    below = below_target(job)
    body: list[str] = [f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(job.job_id if job else '')}</p>"]
    if below and job is not None:
        body.append(_below_target_banner(job, below))
    cards = [(label, value) for label, value in (
        ("registered images", sfm.registered_images if sfm else None),
        ("held-out PSNR (dB)", met.test_psnr if met else None),
        ("held-out SSIM", met.test_ssim if met else None),
        ("Gaussians", met.num_gaussians if met else None),
        ("scene.sog", human_bytes(cmp.outputs.sog) if cmp else None),
        ("total time (s)", job.seconds if job else None)) if value is not None]
    html_cards = [f"<div class=card>{html.escape(k)}<b>{html.escape(fmt(v))}</b></div>" for k, v in cards]
    if (out_dir / "viewer.html").exists() or inputs.compressed:
        link = "open viewer (below target)" if below else "open viewer"
        html_cards.append(f'<div class=card>3-D view<b><a href="viewer.html">{link}</a></b></div>')
    body.append(f"<div class=cards>{''.join(html_cards)}</div>")
    if job and job.quality_gate:
        g = job.quality_gate
        body.append(f"<p class={'pass' if g.passed else 'fail'}>Quality gate: {'passed' if g.passed else 'failed'} "
                    f"(PSNR {fmt(g.test_psnr)} dB vs target {fmt(g.min_psnr)}; "
                    f"{fmt(g.num_gaussians)} Gaussians vs cap {fmt(g.max_gaussians)})</p>")
        body.append(_gate_table(g))
    return body


def _input_section(r: _Read) -> list[str]:
    job, request = r.job, r.job.request if r.job else None
    rows = [(label, v) for label, v in (
        ("source", source_name(job.source_uri) if job else None),
        ("size (bytes)", request.request.size_bytes if request else None),
        ("preset", job.preset if job else None)) if v is not None]
    rows += input_rows(r.sfm) if r.sfm else []
    body = ["<section><h2>Input</h2>",
            table(rows) if rows else "<p class=note>No input summary (no job record or sfm.json).</p>"]
    if request is not None:  # only the resolved options and gate thresholds: never who asked, or where
        body.append(details("every resolved option (request.json)", safe(flatten({"options": request.options}))))
    return [*body, "</section>"]


def _sfm_section(r: _Read, inputs: StageInputs, train: Path | None) -> list[str]:
    sfm = r.sfm
    body = ["<section><h2>Structure from motion</h2>", *_stage_summary(SfmSummary, sfm, "SfM", sfm_rows)]
    if sfm is not None and sfm.validation is not None:  # spaceport.stages.sfm.validate's verdict
        v = sfm.validation
        body.append(f"<p class={'pass' if v.passed else 'fail'}>Validation (collapse / parallax checks): "
                    f"{'passed' if v.passed else 'failed: ' + html.escape('; '.join(v.problems))}</p>")
    if sfm is not None and sfm.unregistered_images:
        body.append(f"<p class=note>{len(sfm.unregistered_images)} of {fmt(sfm.usable_images)} usable images "
                    f"could not be placed and are not in the splat: "
                    f"{html.escape(', '.join(sfm.unregistered_images))}.</p>")
    png, note = camera_path_png(inputs.sfm, train)
    if png:
        body.append(f'<figure><img alt="camera path" src="{data_uri(png)}"></figure>')
    elif note:
        body.append(f"<p class=note>Camera plot: {html.escape(note)}.</p>")
    return [*body, "</section>"]


def _train_section(r: _Read, train: Path | None) -> list[str]:
    body = ["<section><h2>Training</h2>",
            *_stage_summary(TrainMetrics, r.met, "training", train_rows, drop=("history",))]
    if r.met is not None:
        body += _curves(r.met)
    renders = train / "renders" if train else None
    if renders is not None and renders.is_dir():
        pairs = _render_pairs(renders)
        e = r.met.exposure if r.met is not None else None
        at = (f"; each render at its photo's EXIF exposure (photos span {e.spread:.2f}x; the splat and viewer "
              f"show the median exposure)" if e is not None else "")
        body.append(f"<h3>Held-out views ({len(pairs)})</h3><p class=sub>render | ground truth{at}</p>")
        for name, files in pairs[:MAX_RENDERS]:
            imgs = "".join(f'<img alt="{html.escape(p.name)}" src="{_thumb(p)}">' for p in files)
            body.append(f"<figure>{imgs}<figcaption>{html.escape(name)}</figcaption></figure>")
        if len(pairs) > MAX_RENDERS:
            body.append(f"<p class=sub>{len(pairs) - MAX_RENDERS} more held-out views in train/renders/.</p>")
    return [*body, "</section>"]


def _compress_section(r: _Read) -> list[str]:
    cmp = r.cmp
    body = ["<section><h2>Compression</h2>", *_stage_summary(CompressSummary, cmp, "compression", compress_rows)]
    if cmp is not None:
        from spaceport.stages.publish import plots

        src = ("PLY", cmp.input.ply_bytes) if cmp.input.ply_bytes is not None else (
            (cmp.input.format or "input").upper(), cmp.input.bytes)
        sizes = {src[0]: src[1] / 1e6, "SOG": cmp.outputs.sog / 1e6}
        if cmp.outputs.spz is not None:
            sizes["SPZ"] = cmp.outputs.spz / 1e6
        body.append(f'<figure><img alt="sizes" src="{data_uri(plots.bar_plot(sizes, "File sizes", "MB", log_y=True))}"></figure>')
    return [*body, "</section>"]


def _timings_section(r: _Read) -> list[str]:
    """The job record's per-stage numbers for every stage of the graph, with each summary's phases."""
    job = r.job
    read: dict[Any, Any] = {SfmSummary: r.sfm, TrainMetrics: r.met, CompressSummary: r.cmp}
    rows_html = ["<table><tr><th>stage</th><th>seconds</th><th>peak memory (MB)</th><th>phases (s)</th></tr>"]
    any_row = False
    for sd in graph.GRAPH:
        if sd.kind == "gate":
            continue
        summary = read.get(sd.summary)
        rec = job.stages.get(sd.name) if job else None
        phases: dict[str, Any] = dict(summary.seconds) if summary is not None else {}
        secs = rec.seconds if rec and rec.seconds is not None else phases.get("total")
        mem = rec.peak_memory_mb if rec and rec.peak_memory_mb is not None else (
            summary.peak_memory_mb if summary is not None else None)
        phase_txt = ", ".join(f"{k} {fmt(v)}" for k, v in phases.items() if k != "total" and not isinstance(v, dict))
        if secs is None and mem is None:
            continue
        any_row = True
        rows_html.append(f"<tr><td>{sd.name}</td><td>{fmt(secs) if secs is not None else '–'}</td>"
                         f"<td>{fmt(mem) if mem is not None else '–'}</td><td>{html.escape(phase_txt)}</td></tr>")
    rows_html.append("</table>")
    body = ["<section><h2>Timings and memory</h2>",
            "\n".join(rows_html) if any_row else "<p class=note>No timings recorded.</p>"]
    if job and job_record_rows(job):
        body.append(details("job record (chosen fields)", job_record_rows(job)))
    return [*body, "</section>"]


def _build(inputs: StageInputs, train: Path | None, out_dir: Path, title: str) -> Path:
    r = _Read(_optional(SfmSummary, inputs.sfm), _optional(TrainMetrics, train),
              _optional(CompressSummary, inputs.compressed),
              read_summary(JobRecord, inputs.job_record) if inputs.job_record else None)
    if below_target(r.job):
        title = f"{title} (below target)"
    body = [*_header(r, out_dir, inputs, title), *_input_section(r), *_sfm_section(r, inputs, train),
            *_train_section(r, train), *_compress_section(r), *_timings_section(r)]
    body += [f"<p class=note>{html.escape(note)}</p>" for note in inputs.notes]
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<link rel=icon href='data:,'>"  # no favicon request: on AWS it would carry no link token
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{''.join(body)}{PASS_QUERY_SCRIPT}</body></html>\n")
    return write_atomic(out_dir / "index.html", page)
