"""Is a reconstruction usable? Checks that catch a degenerate or collapsed model without ground truth.

A mapper can return a model with every image registered and a sub-pixel reprojection error
whose camera path has collapsed (the global mapper once put a 50-frame phone capture's
cameras at ~6% of their true steps, reprojection error 0.85 px). Such a model is consistent only
because its points sit far from cameras that barely move, or because the mapper dropped the
matches that contradict it. So the checks look at what a collapse cannot hide:

- ``baseline_depth_ratio``: spread of the camera centres (median distance from their median)
  over the median depth of the points seen. Pure rotation or a collapse gives ~0.
- ``median_triangulation_deg`` and ``usable_points_fraction``: per point, the largest angle
  between two of its viewing rays; a usable point has at least ``USABLE_ANGLE_DEG``.
- ``pair_agreement``: for each verified image pair in the matching database (both images
  registered), the fraction of its geometrically verified matches that the model kept as one
  3D point; the median over pairs. A model that contradicts its own two-view geometries keeps few.
- ``points_thickness`` with ``view_spread_deg``: crops of one photo (what a camera turned on
  the spot or zooming sees) map to a "valid" model of a flat picture, 27-degree triangulation
  angles and 0.07 px error included; only the flatness of the points together with cameras that
  all look the same way gives it away.
- ``planar_or_panoramic_pairs`` / ``wide_planar_pairs`` (recorded, not checks): the fraction of
  verified pairs COLMAP classed as a homography (over all pairs / the far-apart half). The crops
  measured 0.93 / 0.79, but so did piecewise-planar good captures (the synthetic orbit 0.75).
- ``path_neighbour_fraction`` (video only, frames in temporal order): the fraction of frames
  whose nearest camera in space is within ``PATH_WINDOW`` frames in time. Recorded, not a
  check: the good exhaustive + incremental model of the monstree video measured 0.43 (its
  photos were taken in passes at several heights, so a frame's nearest neighbour is often on
  another pass), too close to what a shuffled path gives at 23 frames to tell them apart.

Pure NumPy on a :class:`spaceport.geometry.colmap.Model` and the COLMAP database (stdlib sqlite3), so the
pycolmap worker and the tests call the same code. The limits in :data:`LIMITS` were set from
the measurements recorded in ``bench/results/sfm_validation.md``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spaceport.core.summaries import SfmValidation, ValidationFigures
from spaceport.geometry import colmap

#: A point whose viewing rays span at least this many degrees constrains depth (COLMAP filters below 1.5).
USABLE_ANGLE_DEG = 2.0
#: Video: a frame's nearest camera should be at most this many frames away in time.
PATH_WINDOW = 3
#: COLMAP's ``image_pair_to_pair_id``: pair id = id1 * MAX_IMAGES + id2 with id1 < id2.
MAX_IMAGES = 2147483647
#: Two-view geometry types that carry no parallax (COLMAP ``TwoViewGeometry::ConfigurationType``).
PLANAR_OR_PANORAMIC = (4, 5, 6)
#: Above this fraction of homography pairs, a failed registration is blamed on a camera turned on the spot
#: (8 crops of one photo measured 0.93, the shared photo sets 0-0.18).
MOSTLY_ROTATION = 0.7


@dataclass(frozen=True)
class Limits:
    """Where a figure makes a model unusable (see ``bench/results/sfm_validation.md`` for the measurements)."""

    min_baseline_depth_ratio: float = 0.08
    """Good captures measured 0.36 (herzjesu-P8) to 0.60 (fountain-P11); their centres collapsed to 6% of their spread 0.024-0.050."""
    min_median_triangulation_deg: float = 4.0
    """Good captures measured 30-41 degrees; collapsed to 6%, 1.7-2.1 degrees."""
    min_usable_points_fraction: float = 0.6
    """Good captures measured 1.0 of points with at least USABLE_ANGLE_DEG; collapsed to 6%, 0.41-0.54."""
    min_pair_agreement: float = 0.2
    """Good captures measured 0.80 (monstree, sequential matching) to 0.95; a uniform collapse keeps it, so it guards against poses the mapper fitted by dropping the matches that contradict them."""
    min_points_thickness: float = 0.07
    """Checked only with parallel views (below max_parallel_spread_deg). Good captures measured 0.14 (herzjesu-P8's facade) to 0.26; 8 crops of one photo 0.004 (incremental) and 0.033 (global: noisier depths)."""
    max_parallel_spread_deg: float = 2.0
    """Views whose optical axes are within this median angle of their mean are parallel. Good captures measured 11.7-34 degrees; 8 crops of one photo 0.01."""


LIMITS = Limits()

#: check name -> (figure, limit field, what it means for the user's capture)
CHECKS = {
    "baseline": ("baseline_depth_ratio", "min_baseline_depth_ratio",
                 "the camera positions barely differ compared with the distance to the scene (too little parallax)"),
    "triangulation": ("median_triangulation_deg", "min_median_triangulation_deg",
                      "the points are seen from nearly the same direction in every image (too little parallax)"),
    "usable_points": ("usable_points_fraction", "min_usable_points_fraction",
                      "too few points are seen from directions far enough apart to fix their depth"),
    "pair_agreement": ("pair_agreement", "min_pair_agreement",
                       "the camera poses contradict the matches between image pairs (a collapsed reconstruction)"),
    "flat_picture": ("points_thickness", "min_points_thickness",
                     "the images look like parts of one flat picture seen from the same direction, as when the camera "
                     "turned on the spot or zoomed (too little parallax)"),
}


def _observations(model: colmap.Model) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(point row, camera row) of every observation, with the camera centres and world-to-camera rotations."""
    images = list(model.images.values())
    row_of = {int(pid): i for i, pid in enumerate(model.points.ids)}
    pts, cams = [], []
    for c, im in enumerate(images):
        ids = np.asarray(im.point3D_ids)
        ids = ids[ids >= 0]
        rows = np.fromiter((row_of.get(int(p), -1) for p in ids), dtype=np.int64, count=len(ids))
        keep = rows >= 0
        pts.append(rows[keep])
        cams.append(np.full(int(keep.sum()), c, dtype=np.int64))
    centres = np.array([im.center() for im in images]).reshape(-1, 3)
    rots = np.array([im.R() for im in images]).reshape(-1, 3, 3)
    if not pts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), centres, rots
    return np.concatenate(pts), np.concatenate(cams), centres, rots


def triangulation_angles(model: colmap.Model, max_points: int = 20000, max_track: int = 16, seed: int = 0) -> np.ndarray:
    """Per point (a seeded sample of at most ``max_points``), the largest angle in degrees between two of its rays.

    Tracks longer than ``max_track`` use that many of their observations, evenly spaced, which
    keeps the cost at ``max_points * max_track**2`` dot products.
    """
    prow, crow, centres, _ = _observations(model)
    n = len(model.points)
    if n == 0 or len(prow) == 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    chosen = np.arange(n) if n <= max_points else np.sort(rng.choice(n, max_points, replace=False))
    order = np.argsort(prow, kind="stable")
    prow, crow = prow[order], crow[order]
    starts = np.searchsorted(prow, chosen)
    ends = np.searchsorted(prow, chosen, side="right")
    lengths = ends - starts
    ok = lengths >= 2
    chosen, starts, lengths = chosen[ok], starts[ok], lengths[ok]
    take = np.minimum(lengths, max_track)
    # index j of the padded (points, max_track) table -> observation starts + floor(j * length / take)
    j = np.arange(max_track)[None, :]
    valid = j < take[:, None]
    idx = starts[:, None] + (j * lengths[:, None]) // np.maximum(take[:, None], 1)
    idx = np.where(valid, idx, starts[:, None])
    rays = model.points.xyz[chosen][:, None, :] - centres[crow[idx]]
    rays /= np.maximum(np.linalg.norm(rays, axis=2, keepdims=True), 1e-12)
    cos = np.einsum("pik,pjk->pij", rays, rays)
    cos = np.where(valid[:, :, None] & valid[:, None, :], cos, 1.0)
    return np.degrees(np.arccos(np.clip(cos.min(axis=(1, 2)), -1.0, 1.0)))


def baseline_depth_ratio(model: colmap.Model) -> float:
    """Median distance of the camera centres from their median, over the median depth of the observed points."""
    prow, crow, centres, rots = _observations(model)
    if len(centres) < 2 or len(prow) == 0:
        return 0.0
    spread = float(np.median(np.linalg.norm(centres - np.median(centres, axis=0), axis=1)))
    cam_pts = np.einsum("nij,nj->ni", rots[crow], model.points.xyz[prow] - centres[crow])
    depth = float(np.median(np.abs(cam_pts[:, 2])))
    return spread / depth if depth > 0 else 0.0


def flatness(model: colmap.Model) -> tuple[float, float]:
    """(points_thickness, view_spread_deg) of the model.

    ``points_thickness``: smallest over largest principal standard deviation of the points (the
    90% nearest their median). ``view_spread_deg``: median angle between each camera's optical
    axis and the mean axis. Crops of one photo reconstruct as a flat picture (thickness ~0) seen
    by cameras that all look the same way (spread ~0) and pass every other check.
    """
    xyz = model.points.xyz
    if len(xyz) < 10 or not model.images:
        return 0.0, 0.0
    r = np.linalg.norm(xyz - np.median(xyz, axis=0), axis=1)
    core = xyz[r <= np.quantile(r, 0.9)]
    sv = np.linalg.svd(core - core.mean(0), compute_uv=False)
    axes = np.array([im.R()[2] for im in model.images.values()])  # optical axis (camera z) in world
    mean = axes.mean(0)
    spread = np.degrees(np.arccos(np.clip(axes @ (mean / max(np.linalg.norm(mean), 1e-12)), -1, 1)))
    return float(sv[2] / max(sv[0], 1e-12)), float(np.median(spread))


def path_neighbour_fraction(model: colmap.Model, order: list[str], window: int = PATH_WINDOW) -> float | None:
    """Fraction of registered frames whose nearest camera centre is at most ``window`` frames away in ``order``."""
    rank = {name: i for i, name in enumerate(order)}
    ims = [im for im in model.images.values() if im.name in rank]
    if len(ims) < 3:
        return None
    pos = np.array([rank[im.name] for im in ims])
    c = np.array([im.center() for im in ims])
    d = np.linalg.norm(c[:, None] - c[None], axis=2)
    np.fill_diagonal(d, np.inf)
    nearest = np.argmin(d, axis=1)
    return float(np.mean(np.abs(pos[nearest] - pos) <= window))


def pair_figures(model: colmap.Model, database: Path, min_inliers: int = 15) -> dict:
    """Agreement of the model with the verified two-view geometries in ``database``.

    ``pair_agreement``: median over verified pairs of registered images (at least ``min_inliers``
    inlier matches) of the fraction of inlier matches whose two keypoints belong to the same 3D
    point of the model. ``planar_or_panoramic_pairs``: fraction of all verified pairs whose geometry
    COLMAP classed as a homography (a plane or a rotation: no parallax between the two).
    ``wide_planar_pairs``: the same fraction over the checked pairs whose camera centres are at
    least the median distance apart in the model; a video's neighbouring frames may be
    homographies, its far-apart frames are not, unless the whole capture lacks parallax.
    """
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT pair_id, rows, data, config FROM two_view_geometries WHERE rows > 0").fetchall()
    finally:
        con.close()
    ids = {im.id: np.asarray(im.point3D_ids) for im in model.images.values()}
    centres = {im.id: im.center() for im in model.images.values()}
    fractions, configs, checked = [], [], []
    for pair_id, n, blob, config in rows:
        configs.append(config)
        id1, id2 = divmod(int(pair_id), MAX_IMAGES)
        if n < min_inliers or id1 not in ids or id2 not in ids or blob is None:
            continue
        m = np.frombuffer(blob, dtype=np.uint32).reshape(n, 2).astype(np.int64)
        p1, p2 = ids[id1], ids[id2]
        ok = (m[:, 0] < len(p1)) & (m[:, 1] < len(p2))
        a, b = p1[m[ok, 0]], p2[m[ok, 1]]
        fractions.append(float(np.mean((a >= 0) & (a == b))) if len(a) else 0.0)
        checked.append((float(np.linalg.norm(centres[id1] - centres[id2])), config))
    wide = None
    if checked:
        dist = np.array([d for d, _ in checked])
        wide = planar_or_panoramic_pairs([c for d, c in checked if d >= np.median(dist)])
    return {
        "verified_pairs": len(rows),
        "pairs_checked": len(fractions),
        "pair_agreement": float(np.median(fractions)) if fractions else None,
        "pairs_below_agreement": int(np.sum(np.array(fractions) < LIMITS.min_pair_agreement)) if fractions else 0,
        "planar_or_panoramic_pairs": planar_or_panoramic_pairs(configs),
        "wide_planar_pairs": wide,
    }


def planar_or_panoramic_pairs(configs: list[int] | Path) -> float | None:
    """Fraction of verified pairs (their COLMAP geometry types, or read from a database) related by a homography."""
    if isinstance(configs, Path):
        con = sqlite3.connect(f"file:{configs}?mode=ro", uri=True)
        try:
            configs = [c for (c,) in con.execute("SELECT config FROM two_view_geometries WHERE rows > 0")]
        finally:
            con.close()
    return float(np.mean([c in PLANAR_OR_PANORAMIC for c in configs])) if configs else None


def figures(model: colmap.Model, database: Path | None = None, order: list[str] | None = None) -> ValidationFigures:
    """Every figure of the model (None where it cannot be computed); ``order`` only for video frames."""
    angles = triangulation_angles(model)
    out = {
        "registered": len(model.images),
        "points": len(model.points),
        "baseline_depth_ratio": round(baseline_depth_ratio(model), 5),
        "median_triangulation_deg": round(float(np.median(angles)), 3) if len(angles) else 0.0,
        "usable_points_fraction": round(float(np.mean(angles >= USABLE_ANGLE_DEG)), 4) if len(angles) else 0.0,
        "path_neighbour_fraction": None,
    }
    thickness, spread = flatness(model)
    out["points_thickness"] = round(thickness, 4)
    out["view_spread_deg"] = round(spread, 2)
    if order is not None:
        frac = path_neighbour_fraction(model, order)
        out["path_neighbour_fraction"] = round(frac, 4) if frac is not None else None
    if database is not None and Path(database).exists():
        out.update({k: round(v, 4) if isinstance(v, float) else v for k, v in pair_figures(model, database).items()})
    return ValidationFigures(**out)


def verdict(figs: ValidationFigures, limits: Limits = LIMITS) -> SfmValidation:
    """Which checks the figures ``figs`` fail (check names), why (one sentence each), and the limits."""
    failed, problems = [], []
    for check, (figure, limit, meaning) in CHECKS.items():
        value, bound = getattr(figs, figure), getattr(limits, limit)
        if value is None:
            continue  # not applicable (no database, not a video)
        if check == "flat_picture" and figs.view_spread_deg >= limits.max_parallel_spread_deg:
            continue  # a flat scene seen from several directions is a valid capture (a facade, a mural)
        low = limit.startswith("min_")
        if (value < bound) if low else (value > bound):
            failed.append(check)
            problems.append(f"{meaning} ({figure} {value:g} {'<' if low else '>'} {bound:g})")
    return SfmValidation(passed=not failed, failed=failed, problems=problems, figures=figs, limits=asdict(limits))


def validate(model_dir: Path, database: Path | None = None, order: list[str] | None = None,
             limits: Limits = LIMITS) -> SfmValidation:
    """Read the model in ``model_dir`` and return its :func:`verdict`."""
    return verdict(figures(colmap.read_model(Path(model_dir)), database, order), limits)


def fix_for(failed: list[str]) -> str:
    """What the user should do about a capture whose models failed the checks ``failed``."""
    if set(failed) & {"baseline", "triangulation", "usable_points", "flat_picture"}:
        return ("Capture again walking around the scene instead of turning on the spot or zooming, so that every "
                "part is seen from several positions; a video should move the camera sideways, not only pan")
    return ("Capture again with slower, steadier motion and about 70% overlap between neighbouring views, or "
            "run with --mapper incremental")


def score(v: SfmValidation) -> tuple:
    """Sort key of a validated model: more registered images, then more agreement with the matches."""
    f = v.figures
    return (f.registered, f.pair_agreement or 0.0, f.median_triangulation_deg)
