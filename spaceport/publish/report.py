"""The job report: one self-contained ``index.html`` built from the stage summaries.

Inputs are the stage output folders as the Publish job sees them (``sfm/``, ``train/``,
``compressed/``; ``train/`` may hold SageMaker's ``model.tar.gz`` instead of loose files) and,
when there is one, the job record ``job.json``. Every section is optional: a missing or partial
stage gives a note in its section, never a failed report. Plots and renders are embedded as
``data:`` URIs so the page works as a single file, e-mailed or opened from disk.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaceport.progress import parse_line

#: Largest number of held-out render pairs shown (the rest are counted, not shown).
MAX_RENDERS = 6
#: Renders are downscaled to this width (pixels) before embedding.
RENDER_WIDTH = 480


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000.0
    return f"{n:.2f} GB"


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar leaves of a summary as (dotted key, value); long lists are summarised."""
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _flatten(v, key + ".")
        elif isinstance(v, list):
            if v and all(not isinstance(x, (dict, list)) for x in v) and len(v) <= 8:
                rows.append((key, ", ".join(_fmt(x) for x in v)))
            else:
                rows.append((key, f"[{len(v)} entries]"))
        else:
            rows.append((key, v))
    return rows


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append(f"<tr><th>{html.escape(head[0])}</th><th>{html.escape(head[1])}</th></tr>")
    for k, v in rows:
        out.append(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


#: Headline numbers of each summary, by dotted key, in display order (whatever is present is shown).
INPUT_KEYS = ("input_kind", "input_images", "usable_images", "corrupt_images", "ingest.downscaled",
              "ingest.exif_rotated", "ingest.video_rotation", "ingest.frames_decoded", "ingest.frames_blurry")
SFM_KEYS = ("registered_images", "registered_fraction", "points", "mean_reprojection_error",
            "mean_track_length", "matcher", "mapper", "fallback", "camera_mode", "cameras", "camera.model",
            "camera.width", "camera.height",
            "peak_memory_mb")
TRAIN_KEYS = ("test_psnr", "test_ssim", "test_lpips", "lpips", "num_gaussians", "steps", "strategy", "sh_degree",
              "device", "stopped_early", "peak_memory_mb")
COMPRESS_KEYS = ("input.ply_bytes", "input_bytes", "outputs.scene.sog", "outputs.scene.spz", "sog_bytes",
                 "spz_bytes", "ratio.sog", "ratio.spz", "ratio", "gaussians.kept", "gaussians.input",
                 "quality.formats.sog.psnr", "quality.formats.sog.ssim", "quality.formats.spz.psnr",
                 "quality.formats.spz.ssim", "quality.psnr", "quality.ssim", "peak_memory_mb",
                 "sh_palette.entries", "sh_palette.colour_error_levels", "sh_palette.max_error_levels",
                 "sh_palette.target_met", "sh_palette.note")


#: The report is shared by link, so of the job record it shows only these fields (never the
#: source URI, bucket prefix, execution ARN, account id, job names or the user's e-mail).
JOB_FIELDS = ("job_id", "status", "preset", "created_at", "updated_at", "seconds", "cost_usd")
#: Per-stage fields of the job record shown (strings among them still pass :func:`_is_sensitive`).
STAGE_FIELDS = ("status", "seconds", "billable_seconds", "cpu_seconds", "peak_memory_mb", "instance_type",
                "cost_usd", "attempts", "error", "reason", "fix", "registered_images", "num_registered", "points",
                "num_points", "mean_reprojection_error", "test_psnr", "test_ssim", "num_gaussians", "steps",
                "sog_bytes", "spz_bytes", "input_bytes", "ratio", "passed", "min_psnr", "max_gaussians")
_SENSITIVE = re.compile(r"arn:aws|s3://|file://|[^\s@]+@[^\s@]+\.[a-z]{2,}|(?<!\d)\d{12}(?!\d)|^/", re.IGNORECASE)


def _is_sensitive(value: Any) -> bool:
    """A string that could identify the account, the bucket, a local path or a person."""
    return isinstance(value, str) and bool(_SENSITIVE.search(value))


def _safe(rows: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``rows`` without the sensitive values (and without keys that name an e-mail)."""
    return [(k, v) for k, v in rows if not _is_sensitive(v) and "email" not in str(k).lower()]


def job_record_rows(job: dict[str, Any]) -> list[tuple[str, Any]]:
    """The chosen, non-sensitive fields of a job record (job.json), as (dotted key, value)."""
    rows: list[tuple[str, Any]] = [(k, job[k]) for k in JOB_FIELDS if k in job and not isinstance(job[k], dict)]
    for name, stage in (job.get("stages") or {}).items():
        if isinstance(stage, dict):
            rows += [(f"stages.{name}.{k}", stage[k]) for k in STAGE_FIELDS
                     if k in stage and not isinstance(stage[k], (dict, list))]
    metrics = job.get("metrics")
    if isinstance(metrics, dict):
        rows += [(f"metrics.{k}", v) for k, v in metrics.items() if isinstance(v, (int, float))]
    return _safe(rows)


def _source_name(uri: Any) -> str | None:
    """The upload's file name only (its bucket, prefix or local folder stay out of the report)."""
    if not isinstance(uri, str) or not uri:
        return None
    from urllib.parse import unquote

    name = unquote(uri.rstrip("/").rsplit("/", 1)[-1])
    return None if _is_sensitive(name) else name


def _pick(d: dict[str, Any] | None, keys: tuple[str, ...]) -> list[tuple[str, Any]]:
    if not d:
        return []
    flat = dict(_flatten(d))
    return [(k, flat[k]) for k in keys if k in flat]


def _scalars(d: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in d.items() if not isinstance(v, (dict, list)) and k != "seconds"]


def _details(summary: str, rows: list[tuple[str, Any]]) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{_table(rows)}</details>"


def _stage_summary(summary: dict[str, Any] | None, file: str, stage: str, keys: tuple[str, ...],
                   detail_rows: list[tuple[str, Any]] | None = None) -> list[str]:
    """A stage's headline table and its full summary folded away, or a note when the stage has not run."""
    if summary is None:
        return [f"<p class=note>No {file}: the {stage} stage has not run or its output is missing.</p>"]
    rows = detail_rows if detail_rows is not None else _flatten(summary)
    return [_table(_pick(summary, keys) or _scalars(summary)), _details(f"all of {file}", _safe(rows))]


def _seconds_total(summary: dict[str, Any] | None) -> float | None:
    if not summary:
        return None
    s = summary.get("seconds")
    if isinstance(s, (int, float)):
        return float(s)
    if isinstance(s, dict):
        if isinstance(s.get("total"), (int, float)):
            return float(s["total"])
        vals = [v for v in s.values() if isinstance(v, (int, float))]
        return float(sum(vals)) if vals else None
    return None


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    """First present key, searched at the top level and one level down."""
    if not d:
        return None
    for key in keys:
        if key in d and not isinstance(d[key], dict):
            return d[key]
    for v in d.values():
        if isinstance(v, dict):
            for key in keys:
                if key in v and not isinstance(v[key], dict):
                    return v[key]
    return None


def _sog_bytes(cmp_j: dict[str, Any] | None) -> float | None:
    """Size of scene.sog from compress.json (``outputs["scene.sog"]`` or ``sog_bytes``)."""
    if not cmp_j:
        return None
    outputs = cmp_j.get("outputs")
    if isinstance(outputs, dict) and isinstance(outputs.get("scene.sog"), (int, float)):
        return float(outputs["scene.sog"])
    v = _get(cmp_j, "sog_bytes")
    return float(v) if isinstance(v, (int, float)) else None


@dataclass
class StageInputs:
    """The stage folders the report reads; any may be missing."""

    sfm: Path | None = None
    train: Path | None = None
    compressed: Path | None = None
    job_record: Path | None = None
    logs: Path | None = None
    """Stage logs (``train.log``: the training curve when metrics.json holds no history)."""
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_root(cls, root: Path) -> StageInputs:
        """A folder laid out like the S3 job prefix (sfm/, train/, compressed/, job.json or job/job.json)."""
        root = Path(root)
        pick = [root / n if (root / n).is_dir() else None for n in ("sfm", "train", "compressed")]
        # The Publish job gets the record as input channel "job" (job/job.json); a local folder has job.json.
        job = next((p for p in (root / "job" / "job.json", root / "job.json") if p.is_file()), None)
        logs = root / "logs"
        return cls(*pick, job_record=job, logs=logs if logs.is_dir() else None)


def unpack_model(train: Path, scratch: Path) -> Path:
    """When train/ holds only SageMaker's model.tar.gz, extract its small files (not the PLY)."""
    tar_path = train / "model.tar.gz"
    if (train / "metrics.json").exists() or not tar_path.is_file():
        return train
    scratch.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts or name.suffix == ".ply":
                continue
            tar.extract(member, scratch, filter="data")
    return scratch


def training_curve(train: Path | None, metrics: dict[str, Any] | None,
                   logs: Path | None = None) -> list[dict[str, float]]:
    """Step records with loss/psnr: from metrics.json's history, else from the training log."""
    records: list[dict[str, Any]] = []
    for key in ("history", "curve", "log"):
        if metrics and isinstance(metrics.get(key), list):
            records = [r for r in metrics[key] if isinstance(r, dict)]
            break
    if not records:
        candidates = [d / n for d in (train, logs) if d is not None for n in ("train.log", "progress.log")]
        for path in candidates:
            if path.is_file():
                for line in path.read_text(errors="replace").splitlines():
                    fields = parse_line(line)
                    if fields and fields.get("stage") == "train" and "step" in fields and "final" not in fields:
                        records.append(fields)
                break
    out = []
    for r in records:
        row = {}
        for k in ("step", "loss", "psnr", "test_psnr", "num_gaussians", "gaussians"):
            try:
                row[k] = float(r[k])
            except (KeyError, TypeError, ValueError):
                continue
        if "step" in row:
            out.append(row)
    return out


def camera_path_png(sfm: Path | None, train: Path | None) -> tuple[bytes | None, str]:
    """Camera-path plot from the sparse model (or cameras.json); (png, note)."""
    import numpy as np

    from spaceport.publish import plots
    from spaceport.upright import ground_axes, world_up

    centers = rotations = None
    points = np.zeros((0, 3))
    test_mask = None
    if sfm is not None and (sfm / "sparse" / "0").is_dir():
        from spaceport.colmap import read_model

        try:
            model = read_model(sfm / "sparse" / "0")
        except Exception as exc:  # a broken model must not break the report
            return None, f"the sparse model could not be read ({type(exc).__name__}: {exc})"
        images = sorted(model.images.values(), key=lambda im: im.name)
        centers = np.array([im.center() for im in images]) if images else None
        rotations = np.array([im.world_to_camera()[:3, :3] for im in images]) if images else None
        points = model.points.xyz if len(model.points) else points
    if centers is None and train is not None and (train / "cameras.json").is_file():
        cams = (_load_json(train / "cameras.json") or {}).get("cameras", [])
        cams = sorted(cams, key=lambda c: c.get("name", ""))
        if cams:
            w2c = np.array([c["world_to_camera"] for c in cams], dtype=np.float64)
            centers = np.einsum("nji,nj->ni", w2c[:, :3, :3], -w2c[:, :3, 3])
            rotations = w2c[:, :3, :3]
            test_mask = [c.get("split") == "test" for c in cams]
    if centers is None or len(centers) == 0:
        return None, "no camera poses found"
    if train is not None and test_mask is None and (train / "cameras.json").is_file():
        cams = (_load_json(train / "cameras.json") or {}).get("cameras", [])
        split = {c.get("name"): c.get("split") for c in cams}
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
    return _data_uri(buf.getvalue(), "image/jpeg")


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}
section{margin:2em 0;border-top:1px solid #ddd;padding-top:.5em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:14px}
td:nth-child(n+2){font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:22px}.note{color:#a60}
figure{display:inline-block;margin:6px}figcaption{font-size:13px;color:#555}
img{max-width:100%}details summary{cursor:pointer;color:#036}
.pass{color:#080}.fail{color:#b00}
"""


def build_report(inputs: StageInputs, out_dir: Path, *, title: str = "Spaceport job report",
                 scratch: Path | None = None) -> Path:
    """Write ``index.html`` into ``out_dir`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    import tempfile

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


def _build(inputs: StageInputs, train: Path | None, out_dir: Path, title: str) -> Path:
    sfm_j = _load_json(inputs.sfm / "sfm.json") if inputs.sfm else None
    met_j = _load_json(train / "metrics.json") if train else None
    cmp_j = _load_json(inputs.compressed / "compress.json") if inputs.compressed else None
    job_j = _load_json(inputs.job_record) if inputs.job_record else None

    body: list[str] = []
    job_id = (job_j or {}).get("job_id", "")
    body.append(f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(str(job_id))}</p>")

    # Headline cards.
    cards = []
    for label, value in (
        ("registered images", _get(sfm_j, "registered_images", "num_registered", "registered")),
        ("held-out PSNR (dB)", _get(met_j, "test_psnr", "psnr")),
        ("held-out SSIM", _get(met_j, "test_ssim", "ssim")),
        ("Gaussians", _get(met_j, "num_gaussians", "gaussians")),
        ("scene.sog", human_bytes(_sog_bytes(cmp_j)) if _sog_bytes(cmp_j) else None),
        ("total time (s)", (job_j or {}).get("seconds")),
    ):
        if value is not None:
            cards.append(f"<div class=card>{html.escape(label)}<b>{html.escape(_fmt(value))}</b></div>")
    if (out_dir / "viewer.html").exists() or inputs.compressed:
        cards.append('<div class=card>3-D view<b><a href="viewer.html">open viewer</a></b></div>')
    body.append(f"<div class=cards>{''.join(cards)}</div>")
    if job_j and job_j.get("quality_gate"):
        g = job_j["quality_gate"]
        cls = "pass" if g.get("passed") else "fail"
        body.append(f"<p class={cls}>Quality gate: {'passed' if g.get('passed') else 'failed'} "
                    f"(PSNR {_fmt(g.get('test_psnr'))} dB vs target {_fmt(g.get('min_psnr'))}; "
                    f"{_fmt(g.get('num_gaussians'))} Gaussians vs cap {_fmt(g.get('max_gaussians'))})</p>")

    # Input summary.
    body.append("<section><h2>Input</h2>")
    req = (job_j or {}).get("request") or {}
    inner = req.get("request") if isinstance(req.get("request"), dict) else {}
    rows = [(label, v) for label, v in (
        ("source", _source_name(inner.get("source_uri") or (job_j or {}).get("source_uri"))),
        ("size (bytes)", inner.get("size_bytes")),
        ("preset", req.get("preset") or (job_j or {}).get("preset"))) if v is not None]
    rows += [(k, v) for k, v in _safe(_pick(sfm_j, INPUT_KEYS))]
    body.append(_table(rows) if rows else "<p class=note>No input summary (no job record or sfm.json).</p>")
    # Only the resolved stage options and gate thresholds of request.json: never who asked, or where.
    opts = {k: req[k] for k in ("options", "quality_gate") if isinstance(req.get(k), dict)}
    if opts:
        body.append(_details("every resolved option (request.json)", _safe(_flatten(opts))))
    body.append("</section>")

    # SfM.
    body.append("<section><h2>Structure from motion</h2>")
    body += _stage_summary(sfm_j, "sfm.json", "SfM", SFM_KEYS)
    left_out = (sfm_j or {}).get("unregistered_images")
    if isinstance(left_out, list) and left_out:
        body.append(f"<p class=note>{len(left_out)} of {_fmt((sfm_j or {}).get('usable_images'))} usable images "
                    f"could not be placed and are not in the splat: {html.escape(', '.join(map(str, left_out)))}.</p>")
    png, note = camera_path_png(inputs.sfm, train)
    if png:
        body.append(f'<figure><img alt="camera path" src="{_data_uri(png)}"></figure>')
    elif note:
        body.append(f"<p class=note>Camera plot: {html.escape(note)}.</p>")
    body.append("</section>")

    # Training.
    from spaceport.publish import plots

    body.append("<section><h2>Training</h2>")
    body += _stage_summary(met_j, "metrics.json", "training", TRAIN_KEYS,
                           [r for r in _flatten(met_j or {}) if not r[0].startswith(("history", "curve", "log"))])
    curve = training_curve(train, met_j, inputs.logs)
    if curve:
        loss = [(r["step"], r["loss"]) for r in curve if "loss" in r]
        psnr = [(r["step"], r.get("psnr", r.get("test_psnr"))) for r in curve
                if r.get("psnr", r.get("test_psnr")) is not None]
        if loss:
            body.append(f'<figure><img alt="loss" src="{_data_uri(plots.line_plot({"loss": loss}, "Training loss", "step", "loss", log_y=min(v for _, v in loss) > 0))}"></figure>')
        if psnr:
            body.append(f'<figure><img alt="psnr" src="{_data_uri(plots.line_plot({"PSNR": psnr}, "PSNR", "step", "dB"))}"></figure>')
    elif met_j is not None:
        body.append("<p class=note>No training curve (no step history in metrics.json or a training log).</p>")
    renders = train / "renders" if train else None
    if renders is not None and renders.is_dir():
        pairs = _render_pairs(renders)
        body.append(f"<h3>Held-out views ({len(pairs)})</h3><p class=sub>render | ground truth</p>")
        for name, files in pairs[:MAX_RENDERS]:
            imgs = "".join(f'<img alt="{html.escape(p.name)}" src="{_thumb(p)}">' for p in files)
            body.append(f"<figure>{imgs}<figcaption>{html.escape(name)}</figcaption></figure>")
        if len(pairs) > MAX_RENDERS:
            body.append(f"<p class=sub>{len(pairs) - MAX_RENDERS} more held-out views in train/renders/.</p>")
    body.append("</section>")

    # Compression.
    body.append("<section><h2>Compression</h2>")
    body += _stage_summary(cmp_j, "compress.json", "compression", COMPRESS_KEYS)
    if cmp_j is not None:
        sizes = {}
        outputs = cmp_j.get("outputs") if isinstance(cmp_j.get("outputs"), dict) else {}
        for label, keys in (("PLY", ("ply_bytes", "input_bytes")), ("SOG", ("sog_bytes",)), ("SPZ", ("spz_bytes",))):
            v = outputs.get(f"scene.{label.lower()}") if label != "PLY" else None
            v = v if v is not None else _get(cmp_j, *keys)
            if isinstance(v, (int, float)):
                sizes[label] = v / 1e6
        if inputs.compressed is not None:
            for label, name in (("SOG", "scene.sog"), ("SPZ", "scene.spz")):
                if label not in sizes and (inputs.compressed / name).is_file():
                    sizes[label] = (inputs.compressed / name).stat().st_size / 1e6
        if train is not None and "PLY" not in sizes and (train / "splat.ply").is_file():
            sizes["PLY"] = (train / "splat.ply").stat().st_size / 1e6
        if sizes:
            body.append(f'<figure><img alt="sizes" src="{_data_uri(plots.bar_plot(sizes, "File sizes", "MB", log_y=True))}"></figure>')
    body.append("</section>")

    # Timings and memory.
    body.append("<section><h2>Timings and memory</h2>")
    rows_html = ["<table><tr><th>stage</th><th>seconds</th><th>peak memory (MB)</th><th>phases (s)</th></tr>"]
    stage_rows = (job_j or {}).get("stages") or {}
    any_row = False
    for name, summary in (("sfm", sfm_j), ("train", met_j), ("compress", cmp_j), ("publish", None)):
        rec = stage_rows.get(name) or {}
        secs = rec.get("seconds", _seconds_total(summary))
        mem = rec.get("peak_memory_mb", _get(summary, "peak_memory_mb"))
        phases = summary.get("seconds") if summary and isinstance(summary.get("seconds"), dict) else {}
        phase_txt = ", ".join(f"{k} {_fmt(v)}" for k, v in phases.items() if k != "total")
        if secs is None and mem is None:
            continue
        any_row = True
        rows_html.append(f"<tr><td>{name}</td><td>{_fmt(secs) if secs is not None else '–'}</td>"
                         f"<td>{_fmt(mem) if mem is not None else '–'}</td><td>{html.escape(phase_txt)}</td></tr>")
    rows_html.append("</table>")
    body.append("\n".join(rows_html) if any_row else "<p class=note>No timings recorded.</p>")
    if job_j and job_record_rows(job_j):
        body.append(_details("job record (chosen fields)", job_record_rows(job_j)))
    body.append("</section>")
    for note in inputs.notes:
        body.append(f"<p class=note>{html.escape(note)}</p>")

    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
    path = out_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
