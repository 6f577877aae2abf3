"""PlayCanvas SOG (version 2): encoder and decoder.

Layout (as written and read by @playcanvas/splat-transform 3.7.0, ``writers/write-sog.ts`` and
``readers/read-sog.ts``): a ``meta.json`` plus lossless RGBA WebP images of
``W = ceil(sqrt(N)/4)*4`` by ``H = ceil(N/W/4)*4`` texels, texel i holding Gaussian i in Morton
order:

- ``means_l.webp`` / ``means_u.webp``: low / high byte of a 16-bit lerp of
  ``sign(x)*log(|x|+1)`` between ``meta.means.mins`` and ``maxs`` (per axis, RGB; A=255);
- ``quats.webp``: smallest-three quaternion, components scaled by sqrt(2) and mapped to bytes,
  A = 252 + index of the dropped (largest, made positive) component, order w, x, y, z;
- ``scales.webp``: 3 indices into the 256-entry ``meta.scales.codebook`` of log-scales;
- ``sh0.webp``: 3 indices into ``meta.sh0.codebook`` of DC coefficients, A = sigmoid(opacity)*255;
- ``shN_labels.webp``: 16-bit palette index (R low, G high) per Gaussian;
  ``shN_centroids.webp``: the palette, 64 entries per row, each entry ``coeffs`` texels whose RGB
  are indices into ``meta.shN.codebook``.

The bundled ``.sog`` is a zip (stored, not deflated: WebP is already compressed) of the same files.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from spaceport import __version__
from spaceport.core.errors import CompressionFailed, ModelInvalid
from spaceport.core.files import atomic_path
from spaceport.geometry.splat import Splat

from .palette import choose_palette
from .quant import morton_order, quantize_1d

SH_COEFFS = [0, 3, 8, 15]
SQRT2 = math.sqrt(2.0)
FILES = ["means_l.webp", "means_u.webp", "quats.webp", "scales.webp", "sh0.webp"]
SHN_FILES = ["shN_centroids.webp", "shN_labels.webp"]
#: meta.json's ``model`` of a splat trained with the antialiased rasterizer (splat-transform's name).
ANTIALIASED = "antialiased"


def texture_size(n: int) -> tuple[int, int]:
    """(width, height) of the per-Gaussian textures, multiples of 4 (splat-transform's rule)."""
    width = max(4, math.ceil(math.sqrt(n) / 4) * 4)
    height = max(4, math.ceil(n / width / 4) * 4)
    return width, height


def short_floats(values: np.ndarray) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32 (meta.json ~2x smaller)."""
    return [float(np.format_float_positional(v, unique=True, trim="-")) if np.isfinite(v) else 0.0
            for v in np.asarray(values, np.float32)]


def log_transform(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def inv_log_transform(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.expm1(np.abs(v))


def encode_webp(rgba: np.ndarray, method: int = 4) -> bytes:
    """Lossless RGBA WebP; ``exact`` keeps RGB under alpha=0 (sh0 stores opacity in alpha)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(
        buf, "WEBP", lossless=True, quality=100 if method >= 5 else 70, method=method, exact=True)
    return buf.getvalue()


def decode_webp(data: bytes) -> np.ndarray:
    """(H, W, 4) uint8 from WebP bytes."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGBA"))


def _texture(width: int, height: int, cols: list[np.ndarray], alpha: np.ndarray | int = 255) -> np.ndarray:
    """Texture with texel i = (cols[0][i], cols[1][i], cols[2][i], alpha[i])."""
    n = len(cols[0])
    tex = np.zeros((width * height, 4), np.uint8)
    for c, col in enumerate(cols):
        tex[:n, c] = col
    tex[:n, 3] = alpha
    tex[n:, 3] = 255 if np.isscalar(alpha) else 0
    return tex.reshape(height, width, 4)


def pack_quats(q: np.ndarray) -> np.ndarray:
    """(N, 4) wxyz -> (N, 4) uint8 smallest-three with the dropped index in the 4th byte (252+i)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    sign = np.where(q[np.arange(len(q)), largest] < 0, -1.0, 1.0)
    q = q * (sign * SQRT2)[:, None]
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    three = np.take_along_axis(q, keep, axis=1)
    out = np.empty((len(q), 4), np.uint8)
    out[:, :3] = np.clip(np.rint(255 * (three * 0.5 + 0.5)), 0, 255)
    out[:, 3] = 252 + largest
    return out


def unpack_quats(px: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_quats` (tags outside 252..255 decode to identity, as the reader does)."""
    px = px.astype(np.float64)
    tag = px[:, 3].astype(np.int64) - 252
    valid = (tag >= 0) & (tag <= 3)
    tag = np.clip(tag, 0, 3)
    abc = (px[:, :3] / 255 * 2 - 1) / SQRT2
    q = np.zeros((len(px), 4))
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[tag]
    np.put_along_axis(q, keep, abc, axis=1)
    q[np.arange(len(px)), tag] = np.sqrt(np.maximum(0, 1 - (abc * abc).sum(1)))
    q[~valid] = [1, 0, 0, 0]
    return q.astype(np.float32)


@dataclass
class SogImages:
    """The encoded SOG: meta.json and each WebP file, by name."""

    meta: dict
    files: dict[str, bytes] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    palette: dict | None = None
    """How the SH palette size was chosen (:func:`choose_palette`), None at SH degree 0."""

    def bytes_by_file(self) -> dict[str, int]:
        out = {name: len(data) for name, data in self.files.items()}
        out["meta.json"] = len(self.meta_json())
        return out

    def meta_json(self) -> bytes:
        return json.dumps(self.meta, separators=(",", ":")).encode()

    def write_dir(self, folder: Path) -> int:
        """Unbundled output: ``folder/meta.json`` + the WebP files; returns total bytes."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_bytes(self.meta_json())
        for name, data in self.files.items():
            (folder / name).write_bytes(data)
        return sum(self.bytes_by_file().values())

    def write_bundle(self, path: Path) -> int:
        """Bundled ``.sog``: a stored zip with meta.json first; written via a temp file and renamed."""
        path = Path(path)
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("meta.json", self.meta_json())
            for name, data in self.files.items():
                zf.writestr(name, data)
        return path.stat().st_size


def _encode_sh(s: Splat, width: int, height: int, files: dict[str, bytes], meta: dict, seconds: dict[str, float], *,
               palette: int | str, palette_max_error: float, iterations: int, webp_method: int, device: str,
               seed: int) -> dict:
    """The higher SH bands as a k-means palette (``shN_centroids.webp``) and per-Gaussian labels
    (``shN_labels.webp``), added to ``files`` and ``meta``; returns how the palette size was chosen."""
    import time

    n, bands = len(s), s.sh_degree
    t = time.perf_counter()
    coeffs = SH_COEFFS[bands]
    # f_rest order (channel-major): all R coefficients, then G, then B.
    rest = np.ascontiguousarray(s.shN.transpose(0, 2, 1)).reshape(n, 3 * coeffs)
    weights = 1 / (1 + np.exp(-s.opacities.astype(np.float64)))
    centroids, labels, palette_info = choose_palette(rest, weights, palette, palette_max_error, iterations,
                                                     device, seed)
    seconds["kmeans"] = time.perf_counter() - t
    centroids, labels = first_use_order(centroids, labels)
    t = time.perf_counter()
    ncent = len(centroids)
    shcb, cent_lab = quantize_1d(centroids)
    rows = math.ceil(ncent / 64)
    ctex = np.zeros((rows * 64, coeffs, 4), np.uint8)
    ctex[:, :, 3] = 255
    cl = cent_lab.reshape(ncent, 3, coeffs)
    ctex[:ncent, :, 0], ctex[:ncent, :, 1], ctex[:ncent, :, 2] = cl[:, 0], cl[:, 1], cl[:, 2]
    files["shN_centroids.webp"] = encode_webp(ctex.reshape(rows, 64 * coeffs, 4), webp_method)
    lab16 = labels.astype(np.uint16)
    files["shN_labels.webp"] = encode_webp(
        _texture(width, height, [(lab16 & 0xFF).astype(np.uint8), (lab16 >> 8).astype(np.uint8),
                                 np.zeros(n, np.uint8)]), webp_method)
    meta["shN"] = {"count": ncent, "bands": bands, "codebook": short_floats(shcb), "files": list(SHN_FILES)}
    seconds["sh_images"] = time.perf_counter() - t
    return palette_info


def encode_sog(splat: Splat, *, iterations: int = 10, palette: int | str = "auto", palette_max_error: float = 0.5,
               webp_method: int = 4, device: str = "auto", seed: int = 0) -> SogImages:
    """Encode a cleaned splat (finite values, non-zero quaternions) as SOG version 2.

    ``palette``/``palette_max_error``: the SH palette size policy (see :func:`choose_palette`).
    """
    import time

    n = len(splat)
    if n == 0:
        raise CompressionFailed("There are no Gaussians left to encode")
    width, height = texture_size(n)
    if width > 16383 or height > 16383:
        raise CompressionFailed(f"{n} Gaussians exceed SOG's 16383x16383 WebP texture limit")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    order = morton_order(splat.means)
    s = splat.subset(order)
    seconds["morton"] = time.perf_counter() - t
    files: dict[str, bytes] = {}

    t = time.perf_counter()
    lp = log_transform(s.means.astype(np.float64))
    mins, maxs = lp.min(0), lp.max(0)
    rng = np.where(maxs > mins, maxs - mins, 1.0)
    q16 = np.clip(np.rint(65535 * (lp - mins) / rng), 0, 65535).astype(np.uint16)
    lo = (q16 & 0xFF).astype(np.uint8)
    hi = (q16 >> 8).astype(np.uint8)
    files["means_l.webp"] = encode_webp(_texture(width, height, [lo[:, 0], lo[:, 1], lo[:, 2]]), webp_method)
    files["means_u.webp"] = encode_webp(_texture(width, height, [hi[:, 0], hi[:, 1], hi[:, 2]]), webp_method)

    qp = pack_quats(s.quats.astype(np.float64))
    files["quats.webp"] = encode_webp(_texture(width, height, [qp[:, 0], qp[:, 1], qp[:, 2]], qp[:, 3]), webp_method)

    scb, slab = quantize_1d(s.scales)
    files["scales.webp"] = encode_webp(_texture(width, height, [slab[:, 0], slab[:, 1], slab[:, 2]]), webp_method)

    ccb, clab = quantize_1d(s.sh0)
    alpha = np.clip(np.rint(255 / (1 + np.exp(-s.opacities.astype(np.float64)))), 0, 255).astype(np.uint8)
    files["sh0.webp"] = encode_webp(_texture(width, height, [clab[:, 0], clab[:, 1], clab[:, 2]], alpha), webp_method)
    seconds["geometry"] = time.perf_counter() - t

    meta: dict = {
        "version": 2,
        "asset": {"generator": f"spaceport v{__version__}"},
        "count": n,
        "means": {"mins": mins.tolist(), "maxs": maxs.tolist(), "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": short_floats(scb), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": short_floats(ccb), "files": ["sh0.webp"]},
    }
    if s.antialiased:  # splat-transform's entry (absent: an untagged, classic splat)
        meta["model"] = ANTIALIASED

    palette_info = None
    if s.sh_degree > 0:
        palette_info = _encode_sh(s, width, height, files, meta, seconds, palette=palette,
                                  palette_max_error=palette_max_error, iterations=iterations,
                                  webp_method=webp_method, device=device, seed=seed)
    return SogImages(meta=meta, files=files, seconds={k: round(v, 3) for k, v in seconds.items()},
                     palette=palette_info)


def first_use_order(centroids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber palette entries in order of first use along the (Morton-ordered) Gaussians.

    Neighbouring texels then carry nearby, mostly increasing labels, which WebP's predictors
    code in a fraction of the bytes of arbitrary k-means numbering (35 kB -> 15 kB at 20k
    Gaussians); unused entries are dropped.
    """
    used, first = np.unique(labels, return_index=True)
    order = used[np.argsort(first)]
    remap = np.empty(len(centroids), np.int64)
    remap[order] = np.arange(len(order))
    return centroids[order], remap[labels]


def _read_sog_files(path: Path, max_bytes: int) -> tuple[dict, dict[str, bytes]]:
    """meta.json and the files it names, from a bundle, a folder or its meta.json; ModelInvalid on any gap."""
    path = Path(path)
    try:
        if path.is_dir() or path.name == "meta.json":
            folder = path if path.is_dir() else path.parent
            meta = _meta(json.loads((folder / "meta.json").read_bytes()))
            names = _meta_files(meta)
            missing = [n for n in names if not (folder / n).is_file()]
            sizes = {n: (folder / n).stat().st_size for n in names if n not in missing}
            where = f"the folder {folder.name}"
        else:
            with zipfile.ZipFile(path) as zf:
                meta = _meta(json.loads(zf.read("meta.json")))
                names = _meta_files(meta)
                listed = {i.filename: i.file_size for i in zf.infolist()}
                missing = [n for n in names if n not in listed]
                sizes = {n: listed[n] for n in names if n in listed}
            where = f"the bundle {path.name}"
        if missing:
            raise ModelInvalid(f"SOG meta.json names {', '.join(missing)}, which {where} does not hold",
                               "Copy the whole SOG (every file meta.json names), or export it again")
        if sum(sizes.values()) > max_bytes:
            raise ModelInvalid(f"SOG files total {sum(sizes.values())} bytes, more than {max_bytes} for "
                               f"{meta['count']} Gaussians", "Export the SOG again")
        if path.is_dir() or path.name == "meta.json":
            return meta, {n: (folder / n).read_bytes() for n in names}
        with zipfile.ZipFile(path) as zf:
            return meta, {n: zf.read(n) for n in names}
    except ModelInvalid:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelInvalid(f"{path.name} is not a readable SOG ({exc})", "Export the SOG again") from exc


def _meta(meta: object) -> dict:
    if not isinstance(meta, dict) or meta.get("version") != 2:
        version = meta.get("version") if isinstance(meta, dict) else None
        raise ModelInvalid(f"SOG meta version {version!r} is not supported (only version 2)",
                           "Export the SOG with splat-transform 1.x or later")
    try:
        count = meta["count"]
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count={count!r}")
        for key in ("means", "scales", "quats", "sh0"):
            if not isinstance(meta[key]["files"], list):
                raise ValueError(f"{key}.files is not a list")
        for key in ("scales", "sh0"):
            if len(meta[key]["codebook"]) != 256:
                raise ValueError(f"{key}.codebook has {len(meta[key]['codebook'])} entries, not 256")
        if len(meta["means"]["mins"]) != 3 or len(meta["means"]["maxs"]) != 3:
            raise ValueError("means.mins/maxs are not 3 numbers")
        if "shN" in meta and (meta["shN"]["bands"] not in (1, 2, 3) or len(meta["shN"]["codebook"]) != 256):
            raise ValueError("shN.bands or shN.codebook is malformed")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelInvalid(f"SOG meta.json is malformed ({exc})", "Export the SOG again") from exc
    return meta


def _meta_files(meta: dict) -> list[str]:
    names = meta["means"]["files"][:2] + meta["quats"]["files"][:1] + meta["scales"]["files"][:1]
    names += meta["sh0"]["files"][:1] + (meta["shN"]["files"][:2] if "shN" in meta else [])
    if len(names) != (7 if "shN" in meta else 5):
        raise ModelInvalid("SOG meta.json lists too few files", "Export the SOG again")
    for name in names:
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise ModelInvalid(f"SOG meta names an unsafe file {name!r}", "Export the SOG again")
    return names


#: Bytes of SOG files accepted per Gaussian (lossless WebP of 4-byte texels, 7 images, and margin).
MAX_SOG_BYTES_PER_GAUSSIAN = 64


def decode_sog(path: Path, *, max_gaussians: int = 10_000_000) -> Splat:
    """Read a bundled ``.sog``, an unbundled folder or its ``meta.json`` back into a :class:`Splat`.

    The count is checked against ``max_gaussians`` and the files' sizes against the count before
    any image is decoded; a missing file, a truncated or corrupt image, an image smaller than the
    count or palette labels beyond the palette raise :class:`ModelInvalid`.
    """
    meta, files = _read_sog_files(path, max_bytes=MAX_SOG_BYTES_PER_GAUSSIAN * max_gaussians + (1 << 20))
    n = int(meta["count"])
    if n > max_gaussians:
        raise ModelInvalid(f"the SOG has {n} Gaussians, more than the limit of {max_gaussians}",
                           "Raise --max-gaussians on a machine with more memory, or pass a smaller splat")
    width, height = texture_size(n)

    def image(name: str) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(files[name])) as im:
                # Per-Gaussian images are width x height; the palette at most 64 x 15 texels x 1024 rows.
                if im.size[0] * im.size[1] > max(4 * width * height + 4096, 64 * 15 * 1024):
                    raise ModelInvalid(f"SOG image {name} is {im.size[0]}x{im.size[1]}, far larger than "
                                       f"{n} Gaussians need", "Export the SOG again")
                return np.asarray(im.convert("RGBA"))
        except ModelInvalid:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ModelInvalid(f"SOG image {name} is truncated or corrupt ({exc})", "Export the SOG again") from exc

    def tex(name: str) -> np.ndarray:
        img = image(name).reshape(-1, 4)
        if len(img) < n:
            raise ModelInvalid(f"SOG texture {name} has {len(img)} texels, fewer than count={n}",
                               "Export the SOG again; its meta.json and images disagree")
        return img[:n]

    lo = tex(meta["means"]["files"][0]).astype(np.uint32)
    hi = tex(meta["means"]["files"][1]).astype(np.uint32)
    q16 = (lo[:, :3] | (hi[:, :3] << 8)).astype(np.float64)
    mins, maxs = np.array(meta["means"]["mins"], np.float64), np.array(meta["means"]["maxs"], np.float64)
    rng = np.where(maxs - mins != 0, maxs - mins, 1.0)
    means = inv_log_transform(mins + rng * (q16 / 65535)).astype(np.float32)
    quats = unpack_quats(tex(meta["quats"]["files"][0]))
    scb = np.asarray(meta["scales"]["codebook"], np.float32)
    scales = scb[tex(meta["scales"]["files"][0])[:, :3]]
    c0 = tex(meta["sh0"]["files"][0])
    ccb = np.asarray(meta["sh0"]["codebook"], np.float32)
    sh0 = ccb[c0[:, :3]]
    a = np.clip(c0[:, 3] / 255.0, 1e-6, 1 - 1e-6)
    opac = np.log(a / (1 - a)).astype(np.float32)
    shn = np.zeros((n, 0, 3), np.float32)
    if "shN" in meta:
        coeffs = SH_COEFFS[meta["shN"]["bands"]]
        cen = image(meta["shN"]["files"][0])
        if cen.shape[1] != 64 * coeffs:
            raise ModelInvalid(f"SOG shN centroids width {cen.shape[1]} != {64 * coeffs}", "Export the SOG again")
        pal = cen.reshape(-1, coeffs, 4)[:, :, :3]  # (entries, coeffs, rgb)
        lab = tex(meta["shN"]["files"][1]).astype(np.int64)
        label = lab[:, 0] | (lab[:, 1] << 8)
        entries = min(int(meta["shN"]["count"]), len(pal))
        if label.size and int(label.max()) >= entries:
            raise ModelInvalid(f"SOG shN labels reach {int(label.max())}, beyond the palette's {entries} entries",
                               "Export the SOG again; its palette and labels disagree")
        cb = np.asarray(meta["shN"]["codebook"], np.float32)
        shn = cb[pal[label]]  # (n, coeffs, 3)
    return Splat(means=means, scales=scales.astype(np.float32), quats=quats, opacities=opac,
                 sh0=sh0.astype(np.float32), shN=np.ascontiguousarray(shn, dtype=np.float32),
                 antialiased=meta.get("model") == ANTIALIASED)


def sog_antialiased(path: Path) -> bool:
    """Whether a bundled ``.sog`` (or a SOG folder or its meta.json) says its splat is antialiased
    (meta.json ``"model": "antialiased"``), reading only meta.json."""
    path = Path(path)
    if path.is_dir() or path.name == "meta.json":
        meta = json.loads(((path if path.is_dir() else path.parent) / "meta.json").read_bytes())
    else:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
    return isinstance(meta, dict) and meta.get("model") == ANTIALIASED
