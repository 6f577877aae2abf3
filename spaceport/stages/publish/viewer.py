"""The browser viewer: ``viewer.html`` + the PlayCanvas engine + ``scene.sog``, side by side.

The page loads ``scene.sog`` with the PlayCanvas engine's own SOG loader (``pc.Asset`` of type
``gsplat``; the engine unzips the bundle and decodes the WebP textures on the GPU). The engine
build (``playcanvas.min.mjs`` from the npm package) is copied beside the page at build time, so
viewing needs no CDN and works from any static host (the S3 report prefix, or ``spaceport view``).
The initial camera is the first training camera, with its roll, looking where it looked; dragging
orbits about the world's up direction estimated from all cameras (:mod:`spaceport.geometry.upright`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from spaceport.core.errors import ConfigInvalid
from spaceport.core.files import atomic_path, write_atomic
from spaceport.core.summaries import CamerasFile, CameraView, read_summary

#: Overrides where the PlayCanvas engine module is taken from.
ENGINE_ENV = "SPACEPORT_PLAYCANVAS_JS"
ENGINE_FILE = "playcanvas.min.mjs"
_TEMPLATE = Path(__file__).with_name("assets") / "viewer.html"
#: Passes the page's own query on to its relative links (viewer <-> report). On AWS a result link
#: carries its expiry and signature in the query (spaceport.cloud.links) and every file of the job
#: is checked against them at the edge, so a page must hand them on; locally the query is empty.
PASS_QUERY_SCRIPT = (
    "<script>if(location.search){for(const a of document.querySelectorAll('a[href]')){"
    "const h=a.getAttribute('href');if(!/^([a-z][a-z0-9+.-]*:|[#/?])/i.test(h)){"
    "a.setAttribute('href',h+(h.includes('?')?'&'+location.search.slice(1):location.search));}}}</script>")


def find_engine() -> Path:
    """The PlayCanvas engine module: $SPACEPORT_PLAYCANVAS_JS, else node_modules near the code or cwd."""
    env = os.environ.get(ENGINE_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigInvalid(f"{ENGINE_ENV}={env} is not a file", "Point it at node_modules/playcanvas/build/playcanvas.min.mjs")
        return path
    bases = [Path(__file__).resolve().parents[3], Path.cwd(), Path("/opt/spaceport")]
    for base in bases:
        path = base / "node_modules" / "playcanvas" / "build" / ENGINE_FILE
        if path.is_file():
            return path
    raise ConfigInvalid(
        "the PlayCanvas engine (node_modules/playcanvas/build/playcanvas.min.mjs) was not found",
        f"Run `npm ci` in the repository root, or set {ENGINE_ENV}",
    )


def _camera_setup(cameras: list[CameraView]) -> dict[str, Any]:
    """Initial camera (the first training camera: its position, view direction and roll), the
    orbit centre in front of it, the world's up (the orbit axis) and the vertical FOV."""
    import numpy as np

    from spaceport.geometry.upright import world_up

    if not cameras:
        return {"position": [0, 0, -3], "target": [0, 0, 0], "up": [0, -1, 0], "world_up": [0, -1, 0],
                "fov_deg": 50, "near": 0.01, "far": 1000}
    w2c = np.array([c.world_to_camera for c in cameras], dtype=np.float64)
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    centers = np.einsum("nji,nj->ni", R, -t)
    forward = R[:, 2, :]  # OpenCV: camera +z looks forward; row 2 of R is that axis in world space
    # Least-squares point closest to every optical axis: sum (I - d d^T) (p - c) = 0.
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, d in zip(centers, forward, strict=True):
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c
    converge = np.linalg.solve(A, b) if len(cameras) >= 2 and np.linalg.cond(A) < 1e8 else None
    first = next((i for i, c in enumerate(cameras) if c.split == "train"), 0)
    K = np.asarray(cameras[first].K, dtype=np.float64)
    h = float(cameras[first].height)
    fov = float(np.degrees(2 * np.arctan(h / (2 * K[1, 1])))) if K[1, 1] > 0 else 50.0
    # Orbit about the point on the first camera's optical axis nearest to where the cameras look,
    # so the first frame looks exactly where that camera looked (same view as its photo).
    depth = float((converge - centers[first]) @ forward[first]) if converge is not None else 0.0
    if not depth > 0:
        spread = float(np.linalg.norm(centers - centers.mean(0), axis=1).mean())
        depth = spread or 3.0
    target = centers[first] + forward[first] * depth
    return {
        "position": centers[first].tolist(),
        "target": target.tolist(),
        "up": (-R[first, 1, :]).tolist(),  # that camera's roll: OpenCV y points down in the image
        "world_up": world_up(R).tolist(),  # the orbit axis
        "fov_deg": round(fov, 3),
        "near": depth * 0.01,
        "far": depth * 100.0,
    }


def build_viewer(sog: Path, out_dir: Path, cameras_json: Path | None = None, *,
                 label: str = "scene.sog", background: tuple[float, float, float] = (0.1, 0.1, 0.12),
                 banner: str | None = None) -> Path:
    """Write ``viewer.html``, the engine and a copy of ``scene.sog`` into ``out_dir``; return the page.

    ``banner``: a line shown across the top of the view (a splat below the quality gate says so)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = find_engine()
    cameras: list[CameraView] = []
    if cameras_json is not None and Path(cameras_json).is_file():
        cameras = read_summary(CamerasFile, Path(cameras_json)).cameras
    from spaceport.stages.compress.sog import sog_antialiased

    config = {**_camera_setup(cameras), "sog": "scene.sog", "label": label, "background": list(background),
              "banner": banner or "", "antialiased": sog_antialiased(Path(sog))}
    for src, name in ((engine, ENGINE_FILE), (Path(sog), "scene.sog")):
        dst = out_dir / name
        if dst.resolve() != src.resolve():
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
    # The config sits in a JSON script tag; "</" is escaped so no value can close the tag.
    page = _TEMPLATE.read_text().replace("__CONFIG__", json.dumps(config).replace("</", "<\\/"))
    page = page.replace("__PASS_QUERY__", PASS_QUERY_SCRIPT)
    return write_atomic(out_dir / "viewer.html", page)
