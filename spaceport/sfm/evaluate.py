"""Compare an SfM result with known cameras (the synthetic scenes): tests and benchmarks use this."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spaceport import colmap


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
