"""The capture's own figures the quality gate reads (spaceport.stages.train.capture), against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFilter

from spaceport.geometry.imaging import look_at
from spaceport.stages.train.capture import capture_figures, held_out_offsets, mean_colour_psnr, sharpness
from spaceport.stages.train.data import View


def _texture(size: tuple[int, int] = (256, 192), seed: int = 0) -> np.ndarray:
    """Random blocks of 2x2 pixels (detail at the finest scale the measure sees), grey, in [0, 1]."""
    w, h = size
    rng = np.random.default_rng(seed)
    return np.kron(rng.random((h // 2, w // 2)), np.ones((2, 2))).astype(np.float32)


def _blurred(img: np.ndarray, radius: float) -> np.ndarray:
    pil = PILImage.fromarray((img * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(pil, dtype=np.float32) / 255


def test_sharpness_sees_blur_and_ignores_contrast_and_size() -> None:
    sharp = _texture()
    s = sharpness(sharp)
    # 2x2 blocks of white noise: the Laplacian energy is several times the gradient energy.
    assert 5.0 < s < 7.0  # measured 5.99
    assert sharpness(_blurred(sharp, 3)) < 0.5 < 1.3 < s  # the gate's default limit lies between
    assert sharpness(0.25 + 0.5 * sharp) == pytest.approx(s, rel=1e-6)  # contrast and brightness
    # The same picture at twice the size is box-averaged back to 256 px: the same figure.
    big = np.kron(sharp, np.ones((2, 2), np.float32))
    assert sharpness(big) == pytest.approx(s, rel=0.02)
    rgb = np.stack([sharp] * 3, axis=-1)
    assert sharpness(rgb) == pytest.approx(s, rel=1e-4)  # luma of a grey image is the image
    assert sharpness(np.full((48, 64), 0.4, np.float32)) == 0.0  # flat: no gradient


def test_mean_colour_psnr_is_the_photo_against_its_mean() -> None:
    img = np.zeros((4, 4, 3), np.float32)
    img[:2] = 1.0  # half black, half white: MSE 0.25 against grey 0.5
    assert mean_colour_psnr(img) == pytest.approx(10 * math.log10(4), abs=1e-9)


def _line(xs: list[float], turn_deg: float = 0.0) -> list[np.ndarray]:
    """Cameras on the x axis at ``xs``, looking along +z (turned by ``turn_deg`` about y)."""
    out = []
    for x in xs:
        eye = np.array([x, 0.0, 0.0])
        a = math.radians(turn_deg)
        out.append(look_at(eye, eye + np.array([math.sin(a), 0.0, math.cos(a)]), up=np.array([0.0, -1.0, 0.0])))
    return out


def test_held_out_offsets_over_the_widest_training_gap() -> None:
    # Step 1 (the median nearest-neighbour distance); the camera at 8 leaves the widest gap, 3 steps.
    train = _line([0, 1, 2, 3, 4, 5, 8])
    between, far, turned = _line([6.5])[0], _line([14])[0], _line([2], turn_deg=20)[0]
    got = held_out_offsets(train, [between, far, turned])
    # 1.5, 6 and 10 steps (20 degrees in steps of the 2-degree floor), each over the 3-step gap.
    assert got == pytest.approx([0.5, 2.0, 10 / 3])
    assert held_out_offsets(train, []) == [] and held_out_offsets(train[:1], [far]) == []


def test_capture_figures_of_views() -> None:
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    img = np.stack([_texture((64, 48), seed=i) for i in range(3)], axis=-1)
    w2c = _line([0, 1, 2, 3, 4, 9])
    views = [View(f"v{i}.png", "test" if i in (0, 5) else "train", img, K, m, K, (64, 48)) for i, m in enumerate(w2c)]
    fig = capture_figures(views)
    assert fig.held_out_offset == pytest.approx(5.0) and fig.held_out_farthest == "v5.png"  # 5 steps, widest gap 1
    assert fig.baseline_psnr == pytest.approx(mean_colour_psnr(img), abs=1e-4)
    assert fig.sharpness == fig.sharpness_min == pytest.approx(sharpness(img), abs=1e-4)
    none_held_out = capture_figures([View(v.name, "train", v.image, K, v.world_to_camera, K, (64, 48)) for v in views])
    assert none_held_out.held_out_offset is None and none_held_out.baseline_psnr is None
