"""Vectorised NumPy ray casting of a textured ground plane, boxes and spheres.

World frame: metres, z up, ground plane z = 0. Cameras use the OpenCV convention (x right,
y down, z forward) and COLMAP's pixel convention (the centre of pixel (i, j) is at
(i + 0.5, j + 0.5)), so the PINHOLE ground truth written here is exact for the rendered images.

Textures are real photographs bundled inside scikit-image's wheel (no download), each
overlaid with seeded hard-edged shapes and noise: smooth noise alone gives SIFT too little to
match, and repeated tiles would give it wrong matches. Shading is Lambertian with one fixed
light, so a surface point has the same colour from every view (the colour written to
points3D.txt is the colour the renderer gives it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spaceport.core.summaries import CamerasFile, CameraView, write_summary
from spaceport.geometry import colmap
from spaceport.geometry.imaging import look_at

#: Direction towards the light (unit vector, world frame).
LIGHT = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])
AMBIENT = 0.45
#: Half extent of the square ground plane, metres.
GROUND_HALF = 5.0
#: Point the orbit looks at (metres).
TARGET = np.array([0.0, 0.0, 0.3])
SKY_TOP = np.array([0.55, 0.7, 0.9])
SKY_HORIZON = np.array([0.85, 0.88, 0.92])


# ---------------------------------------------------------------- textures
def _photos() -> list[np.ndarray]:
    """The photographs shipped inside scikit-image (offline), as float RGB in [0, 1]."""
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                 "hubble_deep_field", "camera", "brick", "gravel", "coins", "grass", "moon"):
        img = getattr(data, name)().astype(np.float32) / 255.0
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(img[..., :3])
    return out


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return np.asarray(pil.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


def _texture(rng: np.random.Generator, photos: list[np.ndarray], w: int, h: int, tiles: tuple[int, int]) -> np.ndarray:
    """A (h, w, 3) texture: a mosaic of tinted photo crops, hard-edged shapes and a little noise."""
    tx, ty = tiles
    tex = np.zeros((h, w, 3), np.float32)
    order = rng.permutation(len(photos))
    for j in range(ty):
        for i in range(tx):
            photo = photos[order[(j * tx + i) % len(photos)]]
            ph, pw = photo.shape[:2]
            # a random crop of at least half the photo, so neighbouring tiles never repeat
            cw, ch = int(pw * rng.uniform(0.5, 1.0)), int(ph * rng.uniform(0.5, 1.0))
            x0, y0 = rng.integers(0, pw - cw + 1), rng.integers(0, ph - ch + 1)
            x1, x2 = i * w // tx, (i + 1) * w // tx
            y1, y2 = j * h // ty, (j + 1) * h // ty
            tint = rng.uniform(0.6, 1.2, size=3).astype(np.float32)
            tex[y1:y2, x1:x2] = _resize(photo[y0:y0 + ch, x0:x0 + cw], x2 - x1, y2 - y1) * tint
    tile = min(w / tx, h / ty)
    # small hard-edged photo patches: corners and detail SIFT can tell apart (flat shapes all look alike)
    for _ in range(int(20 * tx * ty)):
        photo = photos[rng.integers(len(photos))]
        s = int(rng.uniform(0.05, 0.15) * tile) + 4
        py, px = rng.integers(0, photo.shape[0] - s), rng.integers(0, photo.shape[1] - s)
        y, x = rng.integers(0, h - s), rng.integers(0, w - s)
        tex[y:y + s, x:x + s] = photo[py:py + s, px:px + s] * rng.uniform(0.7, 1.2, size=3).astype(np.float32)
    for _ in range(int(3 * tx * ty)):
        colour = rng.uniform(0, 1, size=3).astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(0.04, 0.15) * tile
        box = rng.random() < 0.5
        aspect = rng.uniform(0.3, 1.5)
        # work on the shape's bounding window only
        xa, xb = int(max(cx - s, 0)), int(min(cx + s + 1, w))
        ya, yb = int(max(cy - s * 1.5, 0)), int(min(cy + s * 1.5 + 1, h))
        yy, xx = np.mgrid[ya:yb, xa:xb]
        if box:
            mask = (np.abs(xx - cx) < s) & (np.abs(yy - cy) < s * aspect)
        else:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < s * s
        tex[ya:yb, xa:xb][mask] = colour
    tex += rng.normal(0, 0.015, size=tex.shape).astype(np.float32)
    return np.clip(tex, 0, 1)


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray, wrap_u: bool = False) -> np.ndarray:
    """Bilinear lookup of ``tex`` at (u, v) in [0, 1] (u across, v down) -> (N, 3)."""
    h, w = tex.shape[:2]
    x = u * w - 0.5
    y = np.clip(v * h - 0.5, 0, h - 1)
    x = np.mod(x, w) if wrap_u else np.clip(x, 0, w - 1)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0)[:, None].astype(np.float32)
    fy = (y - y0)[:, None].astype(np.float32)
    x1 = (x0 + 1) % w if wrap_u else np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    x0 = x0 % w
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bot = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return top * (1 - fy) + bot * fy


# ---------------------------------------------------------------- primitives
@dataclass
class Box:
    """An upright box: centre, half sizes (metres) and yaw about z (radians)."""

    centre: np.ndarray
    half: np.ndarray
    yaw: float
    tex: np.ndarray = field(repr=False)  # an atlas of 3 x 2 face textures

    @property
    def rot(self) -> np.ndarray:
        """Local-to-world rotation."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Ray parameter of the first hit (inf where missed); o (3,), d (N, 3)."""
        R = self.rot
        ol = (o - self.centre) @ R
        dl = d @ R
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dl
            t1 = (-self.half - ol) * inv
            t2 = (self.half - ol) * inv
        tmin = np.nanmax(np.minimum(t1, t2), axis=1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (tmax >= tmin) & (tmin > 1e-6)
        return np.where(hit, tmin, np.inf)

    def bound(self) -> tuple[np.ndarray, float]:
        return self.centre, float(np.linalg.norm(self.half))

    def shade(self, p: np.ndarray) -> np.ndarray:
        """Colour of world points ``p`` (N, 3) lying on the box surface."""
        R = self.rot
        pl = (p - self.centre) @ R
        rel = pl / self.half
        axis = np.argmax(np.abs(rel), axis=1)
        sign = np.sign(rel[np.arange(len(p)), axis])
        face = axis * 2 + (sign > 0)  # 0..5: -x, +x, -y, +y, -z, +z
        # the two coordinates across the face, in [0, 1]
        a = np.where(axis == 0, rel[:, 1], rel[:, 0])
        b = np.where(axis == 2, rel[:, 1], rel[:, 2])
        u = (np.clip(a, -1, 1) + 1) / 2
        v = (1 - np.clip(b, -1, 1)) / 2
        fu = (face % 3 + u) / 3
        fv = (face // 3 + v) / 2
        albedo = _sample(self.tex, fu, fv)
        n_local = np.zeros_like(pl)
        n_local[np.arange(len(p)), axis] = sign
        normal = n_local @ R.T
        return albedo * _lambert(normal)

    def sample_surface(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` points on the visible faces (all but the bottom), area-weighted, world frame."""
        hx, hy, hz = self.half
        areas = np.array([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy])  # -x +x -y +y +z
        face = rng.choice(5, size=n, p=areas / areas.sum())
        pts = rng.uniform(-1, 1, size=(n, 3)) * self.half
        axis = np.array([0, 0, 1, 1, 2])[face]
        sign = np.array([-1, 1, -1, 1, 1])[face]
        pts[np.arange(n), axis] = sign * self.half[axis]
        return pts @ self.rot.T + self.centre

    def area(self) -> float:
        hx, hy, hz = self.half
        return float(4 * (2 * hy * hz + 2 * hx * hz + hx * hy))


@dataclass
class Sphere:
    centre: np.ndarray
    radius: float
    tex: np.ndarray = field(repr=False)  # equirectangular

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        oc = o - self.centre
        b = d @ oc
        c = oc @ oc - self.radius**2
        disc = b * b - c  # d is unit length
        sq = np.sqrt(np.maximum(disc, 0))
        t = -b - sq
        return np.where((disc >= 0) & (t > 1e-6), t, np.inf)

    def bound(self) -> tuple[np.ndarray, float]:
        return self.centre, float(self.radius)

    def shade(self, p: np.ndarray) -> np.ndarray:
        n = (p - self.centre) / self.radius
        u = (np.arctan2(n[:, 1], n[:, 0]) / (2 * np.pi)) % 1.0
        v = np.arccos(np.clip(n[:, 2], -1, 1)) / np.pi
        return _sample(self.tex, u, v, wrap_u=True) * _lambert(n)

    def sample_surface(self, rng: np.random.Generator, n: int) -> np.ndarray:
        d = rng.normal(size=(n * 2, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pts = self.centre + self.radius * d
        return pts[pts[:, 2] > 0.02][:n]  # the part above the ground

    def area(self) -> float:
        return float(4 * np.pi * self.radius**2)


@dataclass
class Ground:
    tex: np.ndarray = field(repr=False)

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -o[2] / d[:, 2]
        p = o + t[:, None] * d
        inside = (np.abs(p[:, 0]) <= GROUND_HALF) & (np.abs(p[:, 1]) <= GROUND_HALF) & (t > 1e-6)
        return np.where(inside, t, np.inf)

    def shade(self, p: np.ndarray) -> np.ndarray:
        u = (p[:, 0] + GROUND_HALF) / (2 * GROUND_HALF)
        v = (GROUND_HALF - p[:, 1]) / (2 * GROUND_HALF)
        return _sample(self.tex, u, v) * _lambert(np.array([[0.0, 0.0, 1.0]]))

    def sample_surface(self, rng: np.random.Generator, n: int) -> np.ndarray:
        xy = rng.uniform(-GROUND_HALF, GROUND_HALF, size=(n, 2))
        return np.column_stack([xy, np.zeros(n)])

    def area(self) -> float:
        return float((2 * GROUND_HALF) ** 2)


def _lambert(normal: np.ndarray) -> np.ndarray:
    return (AMBIENT + (1 - AMBIENT) * np.clip(normal @ LIGHT, 0, 1))[:, None].astype(np.float32)


@dataclass
class Scene:
    """The objects of a synthetic scene; :meth:`render` gives colour and depth for a camera."""

    objects: list[Any]

    def trace(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colour (N, 3) in [0, 1] and ray parameter (inf = sky) of unit rays ``d`` from ``o``."""
        ts = np.full((len(self.objects), len(d)), np.inf)
        for i, obj in enumerate(self.objects):
            bound = getattr(obj, "bound", None)
            if bound is None:
                ts[i] = obj.intersect(o, d)
                continue
            # only rays that pass through the object's bounding sphere can hit it
            centre, radius = bound()
            oc = o - centre
            b = d @ oc
            disc = b * b - (oc @ oc - radius * radius)
            cand = np.flatnonzero((disc >= 0) & (np.sqrt(np.maximum(disc, 0)) - b > 0))
            if len(cand):
                ts[i, cand] = obj.intersect(o, d[cand])
        which = np.argmin(ts, axis=0)
        t = ts[which, np.arange(len(d))]
        # sky: a vertical gradient (featureless, so it never produces matches)
        k = np.clip(d[:, 2], 0, 1)[:, None]
        rgb = (SKY_HORIZON * (1 - k) + SKY_TOP * k).astype(np.float32)
        for i, obj in enumerate(self.objects):
            sel = (which == i) & np.isfinite(t)
            if sel.any():
                rgb[sel] = obj.shade(o + t[sel, None] * d[sel])
        return rgb, t

    def render(self, K: np.ndarray, w2c: np.ndarray, width: int, height: int,
               supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) float32 colour in [0, 1] and (H, W) depth along the optical axis (inf = sky)."""
        s = supersample
        R, tvec = w2c[:3, :3], w2c[:3, 3]
        centre = -R.T @ tvec
        # sub-pixel sample positions in pixel units (COLMAP: pixel centres at +0.5)
        offs = (np.arange(s) + 0.5) / s
        xs = (np.arange(width)[:, None] + offs[None, :]).reshape(-1)
        ys = (np.arange(height)[:, None] + offs[None, :]).reshape(-1)
        px, py = np.meshgrid(xs, ys)
        cam = np.stack([(px - K[0, 2]) / K[0, 0], (py - K[1, 2]) / K[1, 1], np.ones_like(px)], -1).reshape(-1, 3)
        dirs = cam @ R  # camera -> world rotation is R^T; row vectors
        norm = np.linalg.norm(dirs, axis=1)
        dirs /= norm[:, None]
        rgb = np.empty((len(dirs), 3), np.float32)
        t = np.empty(len(dirs))
        step = 1 << 17  # rays per chunk: keeps the temporaries in cache-friendly sizes
        for a in range(0, len(dirs), step):
            rgb[a:a + step], t[a:a + step] = self.trace(centre, dirs[a:a + step])
        depth = t / norm  # ray parameter -> z in the camera frame
        rgb = rgb.reshape(height, s, width, s, 3).mean(axis=(1, 3))
        # depth of the pixel centre sample is what a point projected there sees
        depth = depth.reshape(height, s, width, s)
        depth = np.min(depth, axis=(1, 3)) if s > 1 else depth[:, 0, :, 0]
        return np.clip(rgb, 0, 1), depth


def build_scene(seed: int = 0) -> Scene:
    """The objects of scene ``seed``: the layout is fixed, textures and shapes depend on the seed."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    ground = Ground(_texture(rng, photos, 1024, 1024, (4, 4)))
    boxes = [
        ((1.3, 0.9, 0.6), (0.6, 0.6, 0.6), 0.35),
        ((-1.6, -0.6, 0.4), (0.9, 0.45, 0.4), -0.6),
        ((0.3, -1.9, 1.0), (0.35, 0.35, 1.0), 0.2),
        ((-0.2, 2.4, 0.3), (0.5, 0.3, 0.3), 1.1),
    ]
    objects: list[Any] = [ground]
    for c, h, yaw in boxes:
        objects.append(Box(np.array(c), np.array(h), yaw, _texture(rng, photos, 768, 512, (3, 2))))
    for c, r in (((-1.0, 1.3, 0.7), 0.7), ((2.0, -1.4, 0.45), 0.45)):
        objects.append(Sphere(np.array(c), r, _texture(rng, photos, 1024, 512, (4, 2))))
    return Scene(objects)


# ---------------------------------------------------------------- cameras
def camera_path(views: int, path: str, seed: int) -> list[np.ndarray]:
    """World-to-camera matrices along ``path`` ("orbit" or "walk")."""
    rng = np.random.default_rng(seed + 1000)
    phase = rng.uniform(0, 2 * np.pi)
    out = []
    for i in range(views):
        if path == "orbit":
            a = 2 * np.pi * i / views
            # looking down ~35 degrees: the ground is not too foreshortened, so SIFT matches across views
            radius = 5.0 + 0.3 * np.sin(3 * a + phase)
            height = 3.8 + 0.5 * np.sin(2 * a + phase)
            centre = np.array([radius * np.cos(a), radius * np.sin(a), height])
            target = TARGET + np.array([0.3 * np.sin(a + phase), 0.3 * np.cos(2 * a), 0.0])
        elif path == "walk":
            s = i / max(views - 1, 1)
            centre = np.array([-4.0 + 8.0 * s, -5.5 + 0.5 * np.sin(np.pi * s), 2.8 + 0.3 * np.sin(3 * s + phase)])
            target = np.array([-1.5 + 3.0 * s, 0.0, 0.5])
        else:
            raise ValueError(f"unknown camera path {path!r} (use orbit or walk)")
        out.append(look_at(centre, target))
    return out


def intrinsics(width: int, height: int) -> np.ndarray:
    """PINHOLE K with a ~58 degree horizontal field of view and the principal point at the centre."""
    f = 0.9 * width
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def surface_points(scene: Scene, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count``-ish points on the visible surfaces, area-weighted, with their rendered colours (uint8)."""
    boxes = [o for o in scene.objects if isinstance(o, Box)]
    areas = np.array([o.area() for o in scene.objects])
    n_each = np.maximum(1, np.round(count * areas / areas.sum()).astype(int))
    xyz, rgb = [], []
    for obj, n in zip(scene.objects, n_each, strict=True):
        p = obj.sample_surface(rng, int(n))
        if isinstance(obj, Ground):  # drop points hidden under a box
            hidden = np.zeros(len(p), bool)
            for b in boxes:
                pl = (p - b.centre) @ b.rot
                hidden |= np.all(np.abs(pl[:, :2]) < b.half[:2], axis=1)
            p = p[~hidden]
        xyz.append(p)
        rgb.append(obj.shade(p))
    colours = np.clip(np.round(np.concatenate(rgb) * 255), 0, 255).astype(np.uint8)
    return np.concatenate(xyz), colours


# ---------------------------------------------------------------- writing
def _write_video(frames: list[np.ndarray], path: Path, fps: int) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: stream.height, : stream.width]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_scene(
    out_dir: str | Path,
    views: int = 24,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    path: str = "orbit",
    video: bool = False,
    *,
    video_fps: int = 8,
    supersample: int = 1,
    points: int = 4000,
) -> dict[str, Any]:
    """Render scene ``seed`` from ``views`` cameras along ``path`` into ``out_dir``.

    Writes ``images/view_###.png``, ``gt/sparse/0/{cameras,images,points3D}.txt``,
    ``gt/cameras.json`` and, with ``video``, ``video.mp4`` (the same frames at ``video_fps``).
    Returns ``{"views", "width", "height", "points", "seconds", "radius"}`` where ``radius`` is
    the largest distance of a camera centre from their mean (metres).
    """
    from PIL import Image as PILImage

    start = time.perf_counter()
    width, height = int(size[0]), int(size[1])
    if views < 1 or width < 16 or height < 16:
        raise ValueError("a scene needs at least one view of at least 16x16 pixels")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    sparse = out / "gt" / "sparse" / "0"
    sparse.mkdir(parents=True, exist_ok=True)

    scene = build_scene(seed)
    K = intrinsics(width, height)
    poses = camera_path(views, path, seed)
    frames = []
    images: dict[int, colmap.Image] = {}
    records = []
    for i, w2c in enumerate(poses):
        rgb, _ = scene.render(K, w2c, width, height, supersample=supersample)
        img = np.round(rgb * 255).astype(np.uint8)
        name = f"view_{i:03d}.png"
        PILImage.fromarray(img).save(out / "images" / name)
        if video:
            frames.append(img)
        images[i + 1] = colmap.Image(i + 1, colmap.rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy(), 1, name)
        records.append(CameraView(name=name, split="train", width=width, height=height, K=K.tolist(),
                                  world_to_camera=w2c.tolist()))

    xyz, rgb = surface_points(scene, np.random.default_rng(seed + 2000), points)
    n = len(xyz)
    model = colmap.Model(
        {1: colmap.Camera(1, "PINHOLE", width, height, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))},
        images,
        colmap.Points3D(np.arange(1, n + 1, dtype=np.int64), xyz, rgb, np.zeros(n), np.zeros(n, dtype=np.int64)),
    )
    colmap.write_model_text(model, sparse)
    write_summary(CamerasFile(cameras=records), out / "gt")
    if video:
        _write_video(frames, out / "video.mp4", video_fps)

    centres = np.array([-p[:3, :3].T @ p[:3, 3] for p in poses])
    radius = float(np.max(np.linalg.norm(centres - centres.mean(0), axis=1))) if views > 1 else 0.0
    return {"views": views, "width": width, "height": height, "points": n,
            "seconds": round(time.perf_counter() - start, 3), "radius": radius}
