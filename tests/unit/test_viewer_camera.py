"""The viewer opens at the first training camera, looking where it looked, with its roll, and
orbits about the world's up direction."""

from __future__ import annotations

import math

import numpy as np

from spaceport.core.summaries import CameraView
from spaceport.geometry.upright import UP
from spaceport.stages.publish.viewer import _camera_setup


def _camera(center: np.ndarray, roll_deg: float, split: str, name: str, target=(0.0, 0.0, 0.0)) -> CameraView:
    """A camera at ``center`` looking at ``target``, level (up = -Y) and then rolled about its axis."""
    z = np.asarray(target) - center
    z /= np.linalg.norm(z)
    x = np.cross(-UP, z)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    a = math.radians(roll_deg)
    R = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]) @ R
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, -R @ center
    return CameraView(name=name, split=split, width=640, height=480, K=[[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]],
                      world_to_camera=w2c.tolist())


def test_the_viewer_starts_at_the_first_training_camera_with_its_roll() -> None:
    centers = [np.array([3 * math.sin(a), -1.0, 3 * math.cos(a)]) for a in np.linspace(0, 2 * math.pi, 9)[:-1]]
    cams = [_camera(c, 0.0, "train", f"v{i}") for i, c in enumerate(centers)]
    cams[0] = cams[0].model_copy(update={"split": "test"})  # held out: the viewer starts at the next one
    cams[1] = _camera(centers[1], 30.0, "train", "v1", target=(0.6, 0.0, 0.0))  # crooked, aimed off-centre
    setup = _camera_setup(cams)
    R = np.array(cams[1].world_to_camera)[:3, :3]
    assert np.allclose(setup["position"], centers[1])
    forward = np.array(setup["target"]) - centers[1]
    assert np.allclose(forward / np.linalg.norm(forward), R[2])  # along its optical axis, not re-aimed
    assert 2.5 < np.linalg.norm(forward) < 3.5  # the orbit centre: level with where the cameras converge
    assert np.allclose(setup["up"], -R[1])  # its own roll (30 degrees off the world up)
    x, y, _ = R @ UP  # the world's up seen in that camera's image: leaning 30 degrees
    assert abs(abs(math.degrees(math.atan2(x, -y))) - 30) < 1e-6
    # the orbit axis: all cameras but one are level, so the world's up leans less than 5 degrees
    assert math.degrees(math.acos(np.dot(setup["world_up"], UP))) < 5
    assert abs(setup["fov_deg"] - math.degrees(2 * math.atan(240 / 500))) < 1e-3
