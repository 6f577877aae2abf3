"""Read and write COLMAP sparse models (binary and text) with NumPy alone.

The training stage reads the SfM output with this instead of importing pycolmap (pycolmap's
bundled zlib breaks later PNG writes in the same process, and it is a heavy import). The
synthetic scenes write their ground truth with it. Only the camera models Spaceport uses
(PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV) are named; others are read by id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spaceport.core.errors import ModelInvalid

#: model id -> (name, number of params), from COLMAP's src/colmap/sensor/models.h
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
MODEL_IDS = {name: (mid, n) for mid, (name, n) in CAMERA_MODELS.items()}


@dataclass
class Camera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64, model-specific

    def K(self) -> np.ndarray:
        """3x3 intrinsics (distortion ignored)."""
        p = self.params
        if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "FOV"):
            fx = fy = p[0]
            cx, cy = p[1], p[2]
        else:
            fx, fy, cx, cy = p[0], p[1], p[2], p[3]
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


@dataclass
class Image:
    id: int
    qvec: np.ndarray  # (4,) w, x, y, z: world-to-camera rotation
    tvec: np.ndarray  # (3,) world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))

    def R(self) -> np.ndarray:
        return qvec_to_rotmat(self.qvec)

    def world_to_camera(self) -> np.ndarray:
        """4x4 world-to-camera matrix (OpenCV convention: x right, y down, z forward)."""
        m = np.eye(4)
        m[:3, :3] = self.R()
        m[:3, 3] = self.tvec
        return m

    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R().T @ self.tvec


@dataclass
class Points3D:
    ids: np.ndarray  # (N,) int64
    xyz: np.ndarray  # (N, 3) float64
    rgb: np.ndarray  # (N, 3) uint8
    error: np.ndarray  # (N,) float64
    track_lengths: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Model:
    cameras: dict[int, Camera]
    images: dict[int, Image]
    points: Points3D


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (w, x, y, z) with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    K = np.array(
        [
            [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
            [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
            [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
            [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
        ]
    ) / 3.0
    vals, vecs = np.linalg.eigh(K)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return q if q[0] >= 0 else -q


# ---------------------------------------------------------------- binary
def _read(f, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise ModelInvalid(f"{getattr(f, 'name', 'model file')} is truncated")
    return struct.unpack("<" + fmt, data)


def read_cameras_binary(path: Path) -> dict[int, Camera]:
    cams = {}
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            cid, mid, w, h = _read(f, "iiQQ")
            if mid not in CAMERA_MODELS:
                raise ModelInvalid(f"{path}: unknown camera model id {mid}")
            name, npar = CAMERA_MODELS[mid]
            params = np.array(_read(f, "d" * npar))
            cams[cid] = Camera(cid, name, int(w), int(h), params)
    return cams


def read_images_binary(path: Path) -> dict[int, Image]:
    imgs = {}
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            vals = _read(f, "idddddddi")
            iid, q, t, cid = vals[0], np.array(vals[1:5]), np.array(vals[5:8]), vals[8]
            name = b""
            while (c := f.read(1)) not in (b"\x00", b""):
                name += c
            (npts,) = _read(f, "Q")
            raw = f.read(24 * npts)
            if len(raw) != 24 * npts:
                raise ModelInvalid(f"{path} is truncated")
            arr = np.frombuffer(raw, dtype=np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")]))
            imgs[iid] = Image(
                iid, q, t, cid, name.decode("utf-8"),
                np.stack([arr["x"], arr["y"]], 1) if npts else np.zeros((0, 2)),
                arr["id"].astype(np.int64).copy(),
            )
    return imgs


def read_points3d_binary(path: Path) -> Points3D:
    ids, xyz, rgb, err, tl = [], [], [], [], []
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            vals = _read(f, "QdddBBBd")
            ids.append(vals[0])
            xyz.append(vals[1:4])
            rgb.append(vals[4:7])
            err.append(vals[7])
            (tlen,) = _read(f, "Q")
            f.seek(8 * tlen, 1)  # (image_id, point2D_idx) int32 pairs: not needed here
            tl.append(tlen)
    return Points3D(
        np.array(ids, dtype=np.int64), np.array(xyz, dtype=np.float64).reshape(-1, 3),
        np.array(rgb, dtype=np.uint8).reshape(-1, 3), np.array(err, dtype=np.float64),
        np.array(tl, dtype=np.int64),
    )


def write_cameras_binary(cams: dict[int, Camera], path: Path) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(cams)))
        for c in cams.values():
            mid, npar = MODEL_IDS[c.model]
            f.write(struct.pack("<iiQQ", c.id, mid, c.width, c.height))
            f.write(struct.pack("<" + "d" * npar, *np.asarray(c.params, dtype=np.float64)))


def write_images_binary(imgs: dict[int, Image], path: Path) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(imgs)))
        for im in imgs.values():
            f.write(struct.pack("<idddddddi", im.id, *im.qvec, *im.tvec, im.camera_id))
            f.write(im.name.encode("utf-8") + b"\x00")
            f.write(struct.pack("<Q", len(im.point3D_ids)))
            for (x, y), pid in zip(im.xys, im.point3D_ids, strict=True):
                f.write(struct.pack("<ddq", x, y, pid))


def write_points3d_binary(pts: Points3D, path: Path) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(pts)))
        for i in range(len(pts)):
            f.write(struct.pack("<QdddBBBd", int(pts.ids[i]), *pts.xyz[i], *map(int, pts.rgb[i]), float(pts.error[i])))
            f.write(struct.pack("<Q", 0))


# ---------------------------------------------------------------- text
def write_model_text(model: Model, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cameras.txt", "w") as f:
        f.write("# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n")
        for c in model.cameras.values():
            f.write(f"{c.id} {c.model} {c.width} {c.height} {' '.join(repr(float(p)) for p in c.params)}\n")
    with open(folder / "images.txt", "w") as f:
        f.write("# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n# POINTS2D[] as (X, Y, POINT3D_ID)\n")
        for im in model.images.values():
            vals = " ".join(repr(float(v)) for v in (*im.qvec, *im.tvec))
            f.write(f"{im.id} {vals} {im.camera_id} {im.name}\n")
            f.write(" ".join(f"{float(x)!r} {float(y)!r} {int(pid)}" for (x, y), pid in zip(im.xys, im.point3D_ids, strict=True)) + "\n")
    with open(folder / "points3D.txt", "w") as f:
        f.write("# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]\n")
        p = model.points
        for i in range(len(p)):
            x, y, z = (repr(float(v)) for v in p.xyz[i])
            r, g, b = (int(v) for v in p.rgb[i])
            f.write(f"{int(p.ids[i])} {x} {y} {z} {r} {g} {b} {float(p.error[i])!r}\n")


def read_model_text(folder: Path) -> Model:
    cams: dict[int, Camera] = {}
    for line in (folder / "cameras.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        e = line.split()
        cams[int(e[0])] = Camera(int(e[0]), e[1], int(e[2]), int(e[3]), np.array([float(x) for x in e[4:]]))
    imgs: dict[int, Image] = {}
    lines = [ln for ln in (folder / "images.txt").read_text().splitlines() if not ln.startswith("#")]
    for head, pts in zip(lines[0::2], lines[1::2], strict=False):
        e = head.split()
        if not e:
            continue
        p = pts.split()
        xys = np.array([[float(p[i]), float(p[i + 1])] for i in range(0, len(p), 3)]).reshape(-1, 2)
        pid = np.array([int(p[i + 2]) for i in range(0, len(p), 3)], dtype=np.int64)
        imgs[int(e[0])] = Image(int(e[0]), np.array([float(x) for x in e[1:5]]), np.array([float(x) for x in e[5:8]]),
                                int(e[8]), " ".join(e[9:]), xys, pid)
    rows = [ln.split() for ln in (folder / "points3D.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    pts3 = Points3D(
        np.array([int(r[0]) for r in rows], dtype=np.int64),
        np.array([[float(x) for x in r[1:4]] for r in rows], dtype=np.float64).reshape(-1, 3),
        np.array([[int(x) for x in r[4:7]] for r in rows], dtype=np.uint8).reshape(-1, 3),
        np.array([float(r[7]) for r in rows], dtype=np.float64),
        np.array([(len(r) - 8) // 2 for r in rows], dtype=np.int64),
    )
    return Model(cams, imgs, pts3)


def read_model(folder: Path) -> Model:
    """Read a sparse model folder, binary if present, else text. Raises ModelInvalid if neither is."""
    folder = Path(folder)
    if all((folder / f"{n}.bin").is_file() for n in ("cameras", "images", "points3D")):
        return Model(
            read_cameras_binary(folder / "cameras.bin"),
            read_images_binary(folder / "images.bin"),
            read_points3d_binary(folder / "points3D.bin"),
        )
    if all((folder / f"{n}.txt").is_file() for n in ("cameras", "images", "points3D")):
        return read_model_text(folder)
    raise ModelInvalid(f"No COLMAP model (cameras/images/points3D .bin or .txt) in {folder}")


def write_model_binary(model: Model, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_cameras_binary(model.cameras, folder / "cameras.bin")
    write_images_binary(model.images, folder / "images.bin")
    write_points3d_binary(model.points, folder / "points3D.bin")
