"""World up from camera rotations, and the rotation that makes a model upright."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spaceport.geometry.upright import UP, camera_ups, ground_axes, rotation_to_up, world_up


def _look_at(center: np.ndarray, target: np.ndarray, up: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """World-to-camera rotation (OpenCV rows x, y, z) of a camera at ``center`` looking at ``target``."""
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(-up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    a = math.radians(roll_deg)
    roll = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    return roll @ R


def _orbit(n: int, up: np.ndarray, rolls: list[float] | None = None) -> np.ndarray:
    """Cameras on a tilted ring around the origin, slightly above it, all held level unless rolled."""
    e1, e2 = ground_axes(up)
    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        c = 3 * (math.cos(a) * e1 + math.sin(a) * e2) + 1.0 * up
        out.append(_look_at(c, np.zeros(3), up, (rolls or [0.0] * n)[i]))
    return np.array(out)


def _random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("seed", range(5))
def test_up_is_found_in_any_world_frame_and_turned_to_minus_y(seed: int) -> None:
    true_up = _random_rotation(seed) @ UP
    R = _orbit(12, true_up)
    found = world_up(R)
    # Level cameras looking slightly down at the centre: their ups lean inward, the mean does not.
    assert np.degrees(np.arccos(np.clip(found @ true_up, -1, 1))) < 0.01
    turn = rotation_to_up(found)
    assert np.allclose(turn @ found, UP, atol=1e-9)
    assert np.allclose(turn @ turn.T, np.eye(3), atol=1e-9) and np.linalg.det(turn) == pytest.approx(1.0)
    # After the turn (applied to the world: R_new = R_old @ turn.T) every camera's up leans to -Y.
    assert (camera_ups(R @ turn.T) @ UP > 0.9).all()


def test_a_few_portrait_shots_among_landscape_ones_do_not_tip_the_estimate() -> None:
    up = np.array([0.0, 0.0, 1.0])
    rolls = [90.0 if i % 4 == 0 else 0.0 for i in range(12)]  # a quarter held sideways
    found = world_up(_orbit(12, up, rolls))
    assert np.degrees(np.arccos(found @ up)) < 20


def test_opposite_up_gives_a_half_turn() -> None:
    turn = rotation_to_up(-UP)
    assert np.allclose(turn @ -UP, UP) and np.linalg.det(turn) == pytest.approx(1.0)


def test_ground_axes_are_a_right_handed_top_down_view() -> None:
    for up in (UP, np.array([0.3, 0.2, 0.9]) / np.linalg.norm([0.3, 0.2, 0.9])):
        e1, e2 = ground_axes(up)
        assert abs(e1 @ up) < 1e-12 and abs(e2 @ up) < 1e-12 and abs(e1 @ e2) < 1e-12
        assert np.allclose(np.cross(e1, e2), up)  # x right, y forward, seen from above: not mirrored
