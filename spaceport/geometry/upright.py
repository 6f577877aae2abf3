"""Which way is up in a reconstruction, from its cameras (NumPy only).

SfM fixes the world frame arbitrarily (COLMAP: roughly the first image pair's), so a real capture
can come out on its side. People hold cameras level with the image's top edge up, so the mean of
the registered cameras' "image up" vectors is a robust estimate of the world's up direction, for
orbits, walk-throughs and hand-held videos alike (a dominant-plane fit fails on a tree trunk or a
facade, which are vertical). The SfM stage turns its model so that this direction is ``UP``, and
the report and the viewer use the same estimate on whatever cameras they are given.

Convention: world-to-camera rotations in OpenCV axes (x right, y down, z forward), as in COLMAP
and ``cameras.json``; ``UP`` is -Y, i.e. a camera with the identity rotation is level and upright.
That is the frame 3DGS PLY files are conventionally in, which splat viewers (SuperSplat, the SPZ
tools) flip to their own +Y up.
"""

from __future__ import annotations

import numpy as np

#: The world's up direction after :func:`rotation_to_up` (OpenCV/COLMAP: -Y is up).
UP = np.array([0.0, -1.0, 0.0])


def camera_ups(world_to_camera: np.ndarray) -> np.ndarray:
    """(N, 3) unit vectors pointing to the top edge of each image, in world space.

    ``world_to_camera`` is (N, 3, 3) rotations or (N, 4, 4) / (N, 3, 4) poses; row 1 of the
    rotation is the camera's +y (image down) axis in world coordinates.
    """
    R = np.asarray(world_to_camera, dtype=np.float64)[:, :3, :3]
    return -R[:, 1, :]


def world_up(world_to_camera: np.ndarray) -> np.ndarray:
    """The world's up direction: the normalised mean of the cameras' up vectors.

    When those cancel out (fewer than a third agree, e.g. a camera rolled through every
    angle), the first camera's up is used: the viewer opens at that camera anyway.
    """
    ups = camera_ups(world_to_camera)
    if len(ups) == 0:
        return UP.copy()
    mean = ups.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1.0 / 3.0:
        return ups[0] / np.linalg.norm(ups[0])
    return mean / norm


def rotation_to_up(up: np.ndarray, target: np.ndarray = UP) -> np.ndarray:
    """The smallest rotation R (3x3) with ``R @ up == target`` (both normalised); heading is kept."""
    a = np.asarray(up, dtype=np.float64)
    a = a / np.linalg.norm(a)
    b = np.asarray(target, dtype=np.float64)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1.0 + 1e-9:  # opposite: half a turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 0.0, 1.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)  # Rodrigues' formula for unit a, b


def ground_axes(up: np.ndarray) -> np.ndarray:
    """(2, 3) orthonormal axes spanning the ground plane (perpendicular to ``up``), right-handed
    with ``up`` so that a top-down plot is not mirrored."""
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    seed = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    e1 = seed - (seed @ u) * u
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    return np.stack([e1, e2])
