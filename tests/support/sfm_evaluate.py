"""Compare an SfM result with known cameras: the synthetic scenes, Strecha laser-scan cameras, or another run."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from spaceport.geometry import colmap


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2 (Umeyama 1991); src, dst (N, 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var = (a * a).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var)
    t = mu_d - s * R @ mu_s
    return s, R, t


def compare(model_dir: Path, gt_dir: Path) -> dict:
    """Pose and focal errors of the model in ``model_dir`` against the ground truth in ``gt_dir``.

    Camera centres are aligned with a similarity transform; errors are given in metres and as a
    fraction of the scene radius (largest distance of a true camera centre from their mean).
    """
    model = colmap.read_model(Path(model_dir))
    gt = colmap.read_model(Path(gt_dir))
    gt_by_stem = {Path(im.name).stem: im for im in gt.images.values()}
    est, ref, rot_err = [], [], []
    pairs = []
    for im in model.images.values():
        g = gt_by_stem.get(Path(im.name).stem)
        if g is not None:
            pairs.append((im, g))
            est.append(im.center())
            ref.append(g.center())
    if len(pairs) < 3:
        return {"matched": len(pairs)}
    est, ref = np.array(est), np.array(ref)
    s, R, t = umeyama(est, ref)
    err = np.linalg.norm((s * (R @ est.T)).T + t - ref, axis=1)
    for im, g in pairs:
        # camera-to-world rotations compared after the alignment rotation
        r_est = R @ im.R().T
        r_rel = r_est.T @ g.R().T
        rot_err.append(np.degrees(np.arccos(np.clip((np.trace(r_rel) - 1) / 2, -1, 1))))
    all_ref = np.array([g.center() for g in gt.images.values()])
    radius = float(np.max(np.linalg.norm(all_ref - all_ref.mean(0), axis=1)))
    (cam,) = list(model.cameras.values())[:1]
    (gcam,) = list(gt.cameras.values())[:1]
    f_est = float(cam.K()[0, 0])  # undistortion crops; it keeps the focal length
    f_gt = float(gcam.K()[0, 0])
    return {
        "matched": len(pairs),
        "radius": radius,
        "center_rmse": float(np.sqrt((err**2).mean())),
        "center_max": float(err.max()),
        "center_rmse_frac": float(np.sqrt((err**2).mean()) / radius),
        "center_max_frac": float(err.max() / radius),
        "rotation_max_deg": float(np.max(rot_err)),
        "focal": f_est,
        "focal_gt": f_gt,
        "focal_rel_error": abs(f_est - f_gt) / f_gt,
    }


def read_strecha(gt_dir: Path) -> dict[str, dict]:
    """Ground-truth cameras in Strecha's ``.camera`` format (``gt/<image>.camera``), by image stem.

    Each value has ``K`` (3x3, pixels), ``R`` (camera-to-world: columns are the camera axes),
    ``C`` (centre, metres) and ``size`` (width, height); see captures/README.md.
    """
    cams = {}
    for path in sorted(Path(gt_dir).glob("*.camera")):
        v = np.array(path.read_text().split(), dtype=np.float64)
        cams[Path(path.name.removesuffix(".camera")).stem] = {
            "K": v[0:9].reshape(3, 3), "R": v[12:21].reshape(3, 3), "C": v[21:24], "size": (int(v[24]), int(v[25]))}
    return cams


def align_centres(est: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict:
    """Align the centres in ``est`` to those in ``ref`` (same keys matched) with a similarity; per-camera errors.

    Returns ``matched``, ``errors`` (in ``ref``'s units, one per matched key), ``names``, ``scale``,
    ``rotation`` and ``extent`` (largest distance between two ``ref`` centres). Fewer than 3
    matches give only ``matched``.
    """
    names = sorted(set(est) & set(ref))
    if len(names) < 3:
        return {"matched": len(names)}
    a = np.array([est[n] for n in names], dtype=np.float64)
    b = np.array([ref[n] for n in names], dtype=np.float64)
    s, R, t = umeyama(a, b)
    err = np.linalg.norm((s * (R @ a.T)).T + t - b, axis=1)
    allref = np.array(list(ref.values()), dtype=np.float64)
    extent = float(np.max(np.linalg.norm(allref[:, None] - allref[None], axis=2)))
    return {"matched": len(names), "errors": err, "names": names, "scale": s, "rotation": R, "extent": extent}


def model_centres(model_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], colmap.Model]:
    """Camera centres and camera-to-world rotations of a COLMAP model, by image stem."""
    model = colmap.read_model(Path(model_dir))
    centres = {Path(im.name).stem: im.center() for im in model.images.values()}
    c2w = {Path(im.name).stem: im.R().T for im in model.images.values()}
    return centres, c2w, model


def compare_strecha(model_dir: Path, gt_dir: Path) -> dict:
    """Errors of a model against Strecha laser-scan cameras: centres in mm after a similarity alignment.

    ``focal_rel_error`` compares the model's fx, scaled to the ground truth's image width (the stage
    may have downscaled the images), with the ground truth's.
    """
    gt = read_strecha(gt_dir)
    centres, c2w, model = model_centres(model_dir)
    al = align_centres(centres, {k: v["C"] for k, v in gt.items()})
    if al["matched"] < 3:
        return {"matched": al["matched"], "images": len(gt)}
    err_mm = al["errors"] * 1000.0
    rot = []
    for n in al["names"]:
        r_rel = (al["rotation"] @ c2w[n]).T @ gt[n]["R"]
        rot.append(np.degrees(np.arccos(np.clip((np.trace(r_rel) - 1) / 2, -1, 1))))
    cam = next(iter(model.cameras.values()))
    gw = next(iter(gt.values()))["size"][0]
    f_est = float(cam.K()[0, 0]) * gw / cam.width
    f_gt = float(np.mean([v["K"][0, 0] for v in gt.values()]))
    return {
        "matched": al["matched"], "images": len(gt),
        "centre_median_mm": float(np.median(err_mm)), "centre_max_mm": float(err_mm.max()),
        "centre_rmse_mm": float(np.sqrt((err_mm**2).mean())), "extent_m": al["extent"],
        "rotation_max_deg": float(np.max(rot)), "focal_rel_error": abs(f_est - f_gt) / f_gt,
    }


def compare_runs(model_dir: Path, reference_dir: Path) -> dict:
    """Centre errors of one run against another run of the same images (no ground truth), in % of the reference path's extent."""
    est, _, _ = model_centres(model_dir)
    ref, _, _ = model_centres(reference_dir)
    al = align_centres(est, ref)
    if al["matched"] < 3:
        return {"matched": al["matched"]}
    pct = al["errors"] / max(al["extent"], 1e-12) * 100.0
    return {"matched": al["matched"], "centre_median_pct": float(np.median(pct)), "centre_max_pct": float(pct.max())}


def collapse_centres(model: colmap.Model, factor: float) -> colmap.Model:
    """A copy of ``model`` with every camera centre moved ``factor`` of the way from their mean (points and rotations kept).

    ``factor`` 0.06 is the collapse the global mapper once made of a 50-frame phone capture (camera
    steps at ~6% of their true length; see spaceport.stages.sfm.validate).
    """
    out = copy.deepcopy(model)
    mean = np.mean([im.center() for im in out.images.values()], axis=0)
    for im in out.images.values():
        im.tvec = -im.R() @ (mean + factor * (im.center() - mean))
    return out
