"""Finding, unpacking, reading and cleaning the compression stage's input.

The input is any splat: a 3DGS ``.ply``, an ``.spz`` (v1-v4), a ``.sog`` (bundle, folder or its
``meta.json``) or the training stage's ``model.tar.gz``, or a folder holding one (the SageMaker
Processing input); the format is sniffed from the content, never the file name alone, and
anything else is an :class:`UnsupportedSplat` error naming what is accepted. ``cameras.json``
beside the splat (or in the tarball) gives the quality views. Archives are
unpacked member by member: only regular files with relative paths inside the folder, no links,
no devices, and a cap on the bytes written.

Binary little-endian PLYs are read through a memory map, ``chunk`` rows at a time, straight into
the float32 arrays the encoder uses: peak memory is the cleaned splat (4 bytes per float
property: 248 B per SH3 Gaussian) plus one chunk, never a second full copy of the file.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaceport.core.errors import InputInvalid, ModelInvalid, UnsupportedSplat
from spaceport.core.files import unpack_members
from spaceport.core.summaries import GaussianCounts
from spaceport.geometry.splat import (
    REQUIRED,
    Splat,
    ply_antialiased,
    read_ply,
    sh_coeffs_for_degree,
    sh_degree_for_rest,
)

#: Only these members are taken from a model.tar.gz.
WANTED = {"splat.ply", "cameras.json", "metrics.json"}
PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1",
             "char": "i1", "int8": "i1", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
             "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4"}


#: What `spaceport compress` takes, for the error that names anything else.
ACCEPTED = ("a 3DGS .ply, an .spz (SPZ v1-v4), a .sog (bundle, or a folder / its meta.json) "
            "or the training stage's model.tar.gz")


@dataclass
class ModelInput:
    path: Path
    """The splat: a PLY or SPZ file, a SOG bundle, or a SOG folder."""
    format: str
    """"ply", "spz" or "sog", sniffed from the content (not the file name)."""
    cameras: Path | None
    input_bytes: int
    """Bytes of what was passed (the archive, the file, or every file of a SOG folder)."""


def sniff(path: Path) -> str:
    """What a file holds, from its first bytes: "ply", "spz", "sog", "sog-meta", "tar" or "unknown"."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"ply") and head[3:4] in (b"\n", b"\r"):
        return "ply"
    if head[:4] == b"NGSP":
        return "spz"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                return "sog" if "meta.json" in zf.namelist() else "unknown"
        except (zipfile.BadZipFile, OSError):
            return "sog"  # a damaged zip: the SOG reader names what is wrong with it
    if head[:2] == b"\x1f\x8b":
        with open(path, "rb") as f:
            chunk = f.read(65536)  # enough deflate input for the first 512 bytes out
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(chunk, 512)
        except zlib.error:  # a damaged gzip stream: the name only decides which reader names the damage
            return "spz" if path.name.lower().endswith(".spz") else "tar"
        if inner[:4] == b"NGSP":
            return "spz"
        return "tar" if inner[257:262] == b"ustar" else "unknown"
    if head[257:262] == b"ustar":
        return "tar"
    if head.lstrip()[:1] == b"{":
        try:
            meta = json.loads(path.read_bytes()) if path.stat().st_size < 1 << 24 else {}
        except (ValueError, UnicodeDecodeError):
            return "unknown"
        return "sog-meta" if isinstance(meta, dict) and "means" in meta and "count" in meta else "unknown"
    return "unknown"


def locate(path: Path, workdir: Path, max_unpacked_bytes: int) -> ModelInput:
    """Resolve INPUT (a splat file, a SOG folder, a model.tar.gz or a folder holding one) by its content."""
    path = Path(path)
    if path.is_dir():
        if (path / "meta.json").is_file():
            return _located(path / "meta.json", "sog-meta", workdir, max_unpacked_bytes)
        for name in ("splat.ply", "model.tar.gz"):
            if (path / name).is_file():
                return locate(path / name, workdir, max_unpacked_bytes)
        files = [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
        kinds = [(p, sniff(p)) for p in files]
        known = [(p, k) for p, k in kinds if k != "unknown"]
        if len(known) == 1:
            return _located(*known[0], workdir, max_unpacked_bytes)
        what = "several splats: " + ", ".join(p.name for p, _ in known) if known else "no splat"
        raise InputInvalid(f"{path} holds {what}", f"Pass one of them: {ACCEPTED}")
    if not path.is_file():
        raise InputInvalid(f"{path} does not exist", f"Pass {ACCEPTED}")
    return _located(path, sniff(path), workdir, max_unpacked_bytes)


def _located(path: Path, kind: str, workdir: Path, max_unpacked_bytes: int) -> ModelInput:
    size = path.stat().st_size
    if kind == "tar":
        folder = unpack_model(path, workdir / "model", max_unpacked_bytes)
        if not (folder / "splat.ply").is_file():
            raise ModelInvalid(f"{path.name} has no splat.ply", "Pass the model.tar.gz written by `spaceport train`")
        cams = folder / "cameras.json"
        return ModelInput(folder / "splat.ply", "ply", cams if cams.is_file() else None, size)
    if kind == "sog-meta":
        folder = path.parent
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        return ModelInput(folder, "sog", _cameras_beside(folder), size)
    if kind in ("ply", "spz", "sog"):
        return ModelInput(path, kind, _cameras_beside(path), size)
    raise UnsupportedSplat(f"{path.name} is not a splat this stage can read (its content is none of: {ACCEPTED})",
                           f"Pass {ACCEPTED}")


def _cameras_beside(path: Path) -> Path | None:
    cams = path.parent / "cameras.json"
    return cams if cams.is_file() else None


def read_splat(src: ModelInput, *, max_gaussians: int) -> Splat:
    """Read the located splat into float32 arrays, refusing more than ``max_gaussians`` before allocating."""
    if src.format == "ply":
        return read_model(src.path, max_gaussians=max_gaussians)
    if src.format == "spz":
        from .spz import decode_spz

        return decode_spz(src.path, max_gaussians=max_gaussians)
    from .sog import decode_sog

    return decode_sog(src.path, max_gaussians=max_gaussians)


def unpack_model(archive: Path, dest: Path, max_bytes: int) -> Path:
    """Extract splat.ply / cameras.json / metrics.json from a model tarball, refusing anything unsafe
    (spaceport.core.files.unpack_members: the one safe unpacker, shared with the report)."""
    unpack_members(archive, dest, wanted=lambda name: name.name in WANTED, max_bytes=max_bytes)
    return dest


def _parse_header(path: Path) -> tuple[str, int, list[tuple[str, str]], int, list[str]]:
    """(format, vertex count, vertex properties, header bytes, comments) of a PLY; raises ModelInvalid."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if not head.startswith(b"ply"):
        raise ModelInvalid(f"{path.name} is not a PLY file (it does not start with 'ply')",
                           "Pass the splat.ply written by `spaceport train`")
    end = head.find(b"end_header\n")
    if end < 0:
        raise ModelInvalid(f"{path.name} has no complete PLY header")
    lines = head[:end].decode("ascii", "replace").splitlines()
    fmt, count, props, element = "", -1, [], None
    comments: list[str] = []
    before_vertex = False
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "comment":
            comments.append(line.split(None, 1)[1] if len(parts) > 1 else "")
        elif parts[0] == "format":
            fmt = parts[1] if len(parts) > 1 else ""
        elif parts[0] == "element":
            element = parts[1] if len(parts) > 1 else None
            if element == "vertex":
                try:
                    count = int(parts[2])
                except (IndexError, ValueError) as exc:
                    raise ModelInvalid(f"{path.name} has a malformed vertex count") from exc
            elif count < 0:
                before_vertex = True
        elif parts[0] == "property" and element == "vertex":
            if parts[1] == "list" or parts[1] not in PLY_TYPES:
                raise ModelInvalid(f"{path.name}: unsupported vertex property {' '.join(parts[1:])!r}")
            props.append((parts[2], PLY_TYPES[parts[1]]))
    if count < 0:
        raise ModelInvalid(f"{path.name} has no 'vertex' element")
    if before_vertex:
        fmt = "other"  # another element precedes the vertices: let plyfile handle it
    return fmt, count, props, end + len(b"end_header\n"), comments


def read_model(path: Path, *, max_gaussians: int, chunk: int = 1 << 18) -> Splat:
    """Read a 3DGS PLY into float32 arrays, chunk by chunk; raises ModelInvalid on any bad file."""
    fmt, count, props, offset, comments = _parse_header(path)
    names = [p for p, _ in props]
    missing = [p for p in REQUIRED if p not in names]
    if missing:
        raise ModelInvalid(f"{path.name} is missing the 3DGS properties {', '.join(missing)}",
                           "Export the splat in the standard 3DGS PLY layout")
    if count == 0:
        raise ModelInvalid(f"{path.name} has 0 Gaussians", "Train the model again; it produced an empty splat")
    if count > max_gaussians:
        raise ModelInvalid(f"{path.name} has {count} Gaussians, more than the limit of {max_gaussians}",
                           "Raise --max-gaussians on a machine with more memory, or train with fewer Gaussians")
    if fmt != "binary_little_endian":
        return read_ply(path)  # ascii / big-endian: plyfile (small files in practice)
    dtype = np.dtype([(p, "<" + t) for p, t in props])
    need = offset + count * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise ModelInvalid(f"{path.name} is truncated: {size} bytes, the header needs {need}",
                           "Copy the splat.ply again; the transfer did not finish")
    rec = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))
    n_rest = len([p for p in names if p.startswith("f_rest_")])
    degree = sh_degree_for_rest(n_rest)
    k = sh_coeffs_for_degree(degree) - 1
    out = Splat(means=np.empty((count, 3), np.float32), scales=np.empty((count, 3), np.float32),
                quats=np.empty((count, 4), np.float32), opacities=np.empty(count, np.float32),
                sh0=np.empty((count, 3), np.float32), shN=np.empty((count, k, 3), np.float32),
                antialiased=ply_antialiased(comments))
    groups = [(out.means, ["x", "y", "z"]), (out.scales, ["scale_0", "scale_1", "scale_2"]),
              (out.quats, ["rot_0", "rot_1", "rot_2", "rot_3"]), (out.sh0, ["f_dc_0", "f_dc_1", "f_dc_2"])]
    for s in range(0, count, chunk):
        block = np.asarray(rec[s:s + chunk])
        for arr, cols in groups:
            for j, c in enumerate(cols):
                arr[s:s + len(block), j] = block[c]
        out.opacities[s:s + len(block)] = block["opacity"]
        for c in range(3):
            for j in range(k):
                out.shN[s:s + len(block), j, c] = block[f"f_rest_{c * k + j}"]
    del rec
    return out


def clean(splat: Splat, *, min_log_scale: float, max_log_scale: float) -> tuple[Splat, GaussianCounts]:
    """Drop Gaussians with NaN/Inf values and degenerate ones (zero quaternion, vanishing or huge scales);
    the counts of what was dropped (none yet for a size budget)."""
    n = len(splat)
    finite = splat.finite_mask()
    qn = np.linalg.norm(np.nan_to_num(splat.quats), axis=1)
    sc = np.nan_to_num(splat.scales, nan=0.0)
    degenerate = finite & ((qn < 1e-8) | (sc < min_log_scale).all(1) | (sc > max_log_scale).any(1))
    keep = finite & ~degenerate
    report = GaussianCounts(input=n, kept=int(keep.sum()), dropped_nonfinite=int((~finite).sum()),
                            dropped_degenerate=int(degenerate.sum()), dropped_for_budget=0)
    if report.kept == 0:
        raise ModelInvalid(f"none of the {n} Gaussians is usable ({report.dropped_nonfinite} have NaN/Inf values, "
                           f"{report.dropped_degenerate} are degenerate)",
                           "Train the model again; training diverged")
    return (splat if keep.all() else splat.subset(np.flatnonzero(keep))), report
