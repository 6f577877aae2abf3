"""The Gaussian splat as arrays, and the standard 3DGS PLY layout every viewer reads.

Layout (Inria 3DGS, read by PlayCanvas splat-transform and SuperSplat): ``x y z``,
``nx ny nz`` (zeros), ``f_dc_0..2`` (SH band 0), ``f_rest_0..`` (higher bands, stored
channel-major: all red coefficients, then green, then blue), ``opacity`` (logit),
``scale_0..2`` (log), ``rot_0..3`` (quaternion w, x, y, z; not necessarily normalised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaceport.core.errors import ModelInvalid
from spaceport.core.files import atomic_path

SH_C0 = 0.28209479177387814


def sh_coeffs_for_degree(degree: int) -> int:
    """Number of SH coefficients per colour channel for a degree (1, 4, 9, 16)."""
    return (degree + 1) ** 2


def sh_degree_for_rest(n_rest: int) -> int:
    """SH degree from the number of ``f_rest_*`` properties (0, 9, 24, 45)."""
    per_channel = n_rest // 3 + 1
    degree = round(math.sqrt(per_channel)) - 1
    if n_rest % 3 or (degree + 1) ** 2 != per_channel:
        raise ModelInvalid(f"{n_rest} f_rest properties do not form a whole SH degree (expected 0, 9, 24 or 45)")
    return degree


@dataclass
class Splat:
    """Gaussians in the PLY's parameterisation, float32 arrays with N rows."""

    means: np.ndarray  # (N, 3)
    scales: np.ndarray  # (N, 3) log of the standard deviations
    quats: np.ndarray  # (N, 4) w, x, y, z
    opacities: np.ndarray  # (N,) logit
    sh0: np.ndarray  # (N, 3) DC coefficients
    shN: np.ndarray  # (N, K, 3) higher-band coefficients, K = (degree+1)^2 - 1
    antialiased: bool = False
    """Trained with the antialiased (Mip-Splatting 2D filter) rasterizer: a renderer must scale each
    Gaussian's opacity by the filter's energy compensation, as gsplat's ``rasterize_mode="antialiased"``
    and PlayCanvas's ``GSPLAT_AA`` do. Files carry it: the PLY header comment :data:`PLY_MIP_COMMENT`,
    the SPZ header flag 0x1, and SOG's meta.json ``"model": "antialiased"``."""

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return round(math.sqrt(self.shN.shape[1] + 1)) - 1

    def subset(self, index: np.ndarray) -> Splat:
        return Splat(self.means[index], self.scales[index], self.quats[index], self.opacities[index],
                     self.sh0[index], self.shN[index], self.antialiased)

    def with_sh_degree(self, degree: int) -> Splat:
        """Drop SH bands above ``degree``."""
        k = sh_coeffs_for_degree(degree) - 1
        return Splat(self.means, self.scales, self.quats, self.opacities, self.sh0, self.shN[:, :k], self.antialiased)

    def finite_mask(self) -> np.ndarray:
        """Rows whose every value is finite."""
        m = np.isfinite(self.means).all(1) & np.isfinite(self.scales).all(1) & np.isfinite(self.quats).all(1)
        m &= np.isfinite(self.opacities) & np.isfinite(self.sh0).all(1)
        if self.shN.size:
            m &= np.isfinite(self.shN.reshape(len(self), -1)).all(1)
        return m

    def colors(self) -> np.ndarray:
        """Base RGB in [0, 1] (band 0 only)."""
        return np.clip(self.sh0 * SH_C0 + 0.5, 0.0, 1.0)


def ply_dtype(sh_degree: int) -> np.dtype:
    n_rest = 3 * (sh_coeffs_for_degree(sh_degree) - 1)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(n_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return np.dtype([(n, "<f4") for n in names])


#: The PLY header comment of an antialiased splat: Brush's ``SplatRenderMode: mip``, which Brush and
#: PlayCanvas's splat-transform read (splat-transform also reads Postshot's ``antialiased 1``).
PLY_MIP_COMMENT = "SplatRenderMode: mip"


def ply_antialiased(comments: list[str]) -> bool:
    """Whether a PLY's header comments tag it antialiased (splat-transform's rule: Brush's
    ``SplatRenderMode: default|mip|2dgs`` or Postshot's ``antialiased 0|1``, case-insensitive, the last wins)."""
    aa = False
    for comment in comments:
        text = comment.strip().lower()
        key, value = (text.split(":", 1) if text.startswith("splatrendermode:") else
                      text.split(None, 1) if text.startswith("antialiased ") else ("", ""))
        value = value.strip()
        if key == "splatrendermode" and value in ("default", "mip", "2dgs"):
            aa = value == "mip"
        elif key == "antialiased" and value in ("0", "1"):
            aa = value == "1"
    return aa


def write_ply(splat: Splat, path: Path) -> int:
    """Write the standard binary little-endian 3DGS PLY; returns bytes written.

    Written to ``path.tmp`` then renamed, so a crash never leaves a PLY that looks complete.
    """
    n = len(splat)
    rec = np.zeros(n, dtype=ply_dtype(splat.sh_degree))
    for i, axis in enumerate("xyz"):
        rec[axis] = splat.means[:, i]
    for i in range(3):
        rec[f"f_dc_{i}"] = splat.sh0[:, i]
        rec[f"scale_{i}"] = splat.scales[:, i]
    # f_rest is channel-major: f_rest_{c*K + k} holds coefficient k of channel c.
    k = splat.shN.shape[1]
    rest = np.ascontiguousarray(splat.shN.transpose(0, 2, 1)).reshape(n, 3 * k)
    for j in range(3 * k):
        rec[f"f_rest_{j}"] = rest[:, j]
    rec["opacity"] = splat.opacities
    for i in range(4):
        rec[f"rot_{i}"] = splat.quats[:, i]
    header = ["ply", "format binary_little_endian 1.0", *([f"comment {PLY_MIP_COMMENT}"] if splat.antialiased else []),
              f"element vertex {n}"]
    header += [f"property float {name}" for name in rec.dtype.names]
    header += ["end_header"]
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(rec.tobytes())
    return path.stat().st_size


REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]


def read_ply(path: Path) -> Splat:
    """Read a 3DGS PLY (any property order; binary or ascii). Raises ModelInvalid on a bad file."""
    from plyfile import PlyData, PlyHeaderParseError  # light, but only the readers need it

    path = Path(path)
    if not path.is_file():
        raise ModelInvalid(f"{path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"ply\n" and magic[:3] != b"ply":
        raise ModelInvalid(f"{path.name} is not a PLY file (it does not start with 'ply')",
                           "Pass the splat.ply written by `spaceport train`")
    try:
        ply = PlyData.read(str(path))
    except PlyHeaderParseError as exc:
        raise ModelInvalid(f"{path.name} has a malformed PLY header ({exc})") from exc
    except (ValueError, EOFError, OSError) as exc:
        raise ModelInvalid(f"{path.name} is truncated or corrupt ({exc})") from exc
    if "vertex" not in ply:
        raise ModelInvalid(f"{path.name} has no 'vertex' element")
    v = ply["vertex"].data
    names = set(v.dtype.names or ())
    missing = [p for p in REQUIRED if p not in names]
    if missing:
        raise ModelInvalid(f"{path.name} is missing the 3DGS properties {', '.join(missing)}",
                           "Export the splat in the standard 3DGS PLY layout")
    n = len(v)
    n_rest = len([p for p in names if p.startswith("f_rest_")])
    degree = sh_degree_for_rest(n_rest)
    k = sh_coeffs_for_degree(degree) - 1

    def cols(keys: list[str]) -> np.ndarray:
        return np.stack([np.asarray(v[key], dtype=np.float32) for key in keys], 1) if keys else np.zeros((n, 0), np.float32)

    rest = cols([f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k).transpose(0, 2, 1)
    return Splat(
        means=cols(["x", "y", "z"]),
        scales=cols(["scale_0", "scale_1", "scale_2"]),
        quats=cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacities=np.asarray(v["opacity"], dtype=np.float32),
        sh0=cols(["f_dc_0", "f_dc_1", "f_dc_2"]),
        shN=np.ascontiguousarray(rest),
        antialiased=ply_antialiased(list(ply.comments)),
    )
