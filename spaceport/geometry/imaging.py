"""Numeric helpers the scenes, training and compression share: the OpenCV look-at camera and PSNR.

NumPy only (no torch), so the scene generator and the compression stage use the same definitions
as training without importing each other.
"""

from __future__ import annotations

import math

import numpy as np

#: PSNR of identical images is infinite; report this instead (dB), as for an MSE of 1e-10.
MAX_PSNR_DB = 100.0


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """4x4 OpenCV world-to-camera (x right, y down, z forward) for a camera at ``eye`` looking at ``target``.

    ``up`` (default +z, the scenes' world up) only fixes the roll; when it is parallel to the view
    direction, +x is used instead.
    """
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: the camera axes in world coordinates
    m = np.eye(4)
    m[:3, :3] = R
    m[:3, 3] = -R @ eye
    return m


def psnr_db(mse: float) -> float:
    """PSNR in dB of images in [0, 1] with mean squared error ``mse`` (capped at :data:`MAX_PSNR_DB`)."""
    return 10.0 * math.log10(1.0 / max(float(mse), 10 ** (-MAX_PSNR_DB / 10)))
