"""Niantic SPZ, versions 1-4: decoder for all of them, encoder for 3 (legacy gzip) and 4 (ZSTD).

Layout (nianticlabs/spz ``src/cc/load-spz.cc``; the same as splat-transform 3.7.0's
``readers/read-spz.ts`` reads). Every version stores the same attribute blocks, in this order:
positions (3 x signed 24-bit fixed point with ``fractionalBits``; v1: 3 x float16), alphas
(sigmoid x 255), colours (DC x 0.15 + 0.5, x 255), log-scales ((s + 10) x 16), rotations (v3+:
smallest-three, a 2-bit index of the largest component and three 10-bit signed values in x y z w
order; v1/v2: x y z bytes, w >= 0 derived) and SH (coefficient-major, channel inner, byte =
x x 128 + 128, rounded to 5 bits for band 1 and 4 bits above, as Niantic's packer does).

- v1-v3 ("legacy"): one gzip stream of a 16-byte header (magic ``NGSP`` 0x5053474e, version,
  point count, SH degree, fractional bits, flags, reserved) and the blocks. Extension records,
  when flag 0x2 is set, follow the blocks (current Niantic writer) or the header (its writer
  before ZSTD); both are read.
- v4: a plaintext 32-byte header (as above, then stream count, TOC offset, 12 reserved bytes),
  extension records in ``[32, tocByteOffset)``, a TOC of (compressed, uncompressed) u64 pairs,
  then one ZSTD frame per non-empty block (5 streams at SH degree 0, else 6), ending at the
  file's end.

Extension records are ``[u32 type][u32 byteLength][payload]``. Coordinates: SPZ's default frame is
RUB, but splat-transform writes and reads the bytes raw ("unspecified"), i.e. in the PLY's frame
(RDF for 3DGS). We do the same, so our files and splat-transform's round-trip unchanged, and in
v4 we also write Adobe's coordinate-system extension (0xADBE0003) saying RDF, so a reader that
honours it (Niantic's library built with extensions) converts correctly. On reading, a file that
carries that extension is converted from its stated frame to RDF; a file without it is read raw,
as splat-transform reads it.

Bad input raises :class:`ModelInvalid` naming the problem (truncated or corrupt stream, unknown
version, a count that does not match the streams, a count above the caller's bound, checked from
the header before anything of that size is allocated or decompressed).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spaceport.core.errors import CompressionFailed, ModelInvalid
from spaceport.geometry.splat import Splat

MAGIC = 0x5053474E
LATEST_VERSION = 4
WRITABLE_VERSIONS = (3, 4)
COLOR_SCALE = 0.15
SH_COMPONENTS = [0, 9, 24, 45, 72]  # bytes of SH per Gaussian by degree (0-4)
C_MASK = (1 << 9) - 1
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2
LEGACY_HEADER = struct.Struct("<IIIBBBB")  # 16 bytes
V4_HEADER = struct.Struct("<IIIBBBBI12x")  # 32 bytes
#: Adobe's coordinate-system extension: payload one u32, a CoordinateSystem value.
EXT_COORDINATE_SYSTEM = 0xADBE0003
#: CoordinateSystem values 1-8 of nianticlabs/spz (splat-types.h): axis directions of x, y, z.
#: (9-16, the "rotated" family that swaps y and z, are refused.)
COORDINATE_SYSTEMS = {1: "LDB", 2: "RDB", 3: "LUB", 4: "RUB", 5: "LDF", 6: "RDF", 7: "LUF", 8: "RUF"}
RDF = 6
#: Niantic writes its ZSTD streams at level 12.
ZSTD_LEVEL = 12
#: Extension bytes we accept in a legacy file beyond its blocks (records are a few dozen bytes).
MAX_EXTENSION_BYTES = 1 << 20
#: Parity of each real SH basis function (bands 1-3, gsplat/Inria order) in x, y and z: flipping
#: an axis flips the sign of the coefficients whose basis is odd in it (e.g. band 1 is y, z, x).
SH_PARITY = np.array([
    (0, 1, 0), (0, 0, 1), (1, 0, 0),
    (1, 1, 0), (0, 1, 1), (0, 0, 0), (1, 0, 1), (0, 0, 0),
    (0, 1, 0), (1, 1, 1), (0, 1, 0), (0, 0, 1), (1, 0, 0), (0, 0, 1), (1, 0, 0),
])


@dataclass
class SpzInfo:
    """What the header and extensions of a decoded SPZ said (for compress.json and tests)."""

    version: int
    count: int
    sh_degree: int
    fractional_bits: int
    antialiased: bool
    extensions: list[tuple[int, int]] = field(default_factory=list)
    """(type, payload bytes) of each extension record, known or not."""
    coordinate_system: str | None = None
    """The frame the file said it stores (Adobe extension), converted to RDF on reading; None: raw."""
    dropped_sh_band4: bool = False
    """An SH degree 4 file: band 4 is dropped (the splat model holds bands 0-3)."""


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _quantize_sh(x: np.ndarray, bucket: int) -> np.ndarray:
    q = np.rint(x * 128.0).astype(np.int64) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def fractional_bits_for(means: np.ndarray) -> int:
    """Most fractional bits (<= 12, Niantic's default) that keep every coordinate in 24 bits."""
    extent = float(np.abs(means).max()) if means.size else 0.0
    bits = 12
    while bits > 0 and extent * (1 << bits) >= (1 << 23) - 1:
        bits -= 1
    if extent * (1 << bits) >= (1 << 23) - 1:
        raise CompressionFailed(f"positions up to {extent:.3g} do not fit SPZ's 24-bit fixed point")
    return bits


def pack_rotations(q_wxyz: np.ndarray) -> np.ndarray:
    """(N, 4) wxyz -> (N,) uint32 smallest-three words."""
    q = q_wxyz[:, [1, 2, 3, 0]].astype(np.float64)  # SPZ order is x y z w
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    n = len(q)
    largest = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(n), largest] < 0
    comp = largest.astype(np.uint64)
    for i in range(4):
        use = largest != i
        negbit = ((q[:, i] < 0) ^ negate).astype(np.uint64)
        mag = np.floor(C_MASK * (np.abs(q[:, i]) / np.sqrt(0.5)) + 0.5).astype(np.uint64)
        mag = np.minimum(mag, C_MASK)
        comp = np.where(use, (comp << np.uint64(10)) | (negbit << np.uint64(9)) | mag, comp)
    return comp.astype(np.uint32)


def unpack_rotations(words: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rotations`; returns (N, 4) wxyz."""
    packed = words.astype(np.uint64)
    largest = (packed >> np.uint64(30)).astype(np.int64)
    q = np.zeros((len(words), 4))
    for j in range(3, -1, -1):
        use = largest != j
        mag = (packed & np.uint64(C_MASK)).astype(np.float64)
        neg = ((packed >> np.uint64(9)) & np.uint64(1)).astype(bool)
        v = np.sqrt(0.5) * mag / C_MASK
        q[:, j] = np.where(use, np.where(neg, -v, v), 0.0)
        packed = np.where(use, packed >> np.uint64(10), packed)
    q[np.arange(len(words)), largest] = np.sqrt(np.maximum(0.0, 1.0 - (q * q).sum(1)))
    return q[:, [3, 0, 1, 2]].astype(np.float32)


def _first_three(block: np.ndarray) -> np.ndarray:
    """v1/v2 rotations: x y z bytes (w >= 0 derived) -> (N, 4) wxyz."""
    xyz = block.reshape(-1, 3) / 127.5 - 1.0
    w = np.sqrt(np.maximum(0, 1 - (xyz * xyz).sum(1)))
    return np.concatenate([w[:, None], xyz], 1).astype(np.float32)


def _blocks(splat: Splat) -> list[np.ndarray]:
    """The six attribute blocks of a v3/v4 file, in file order (SH empty at degree 0)."""
    n = len(splat)
    bits = fractional_bits_for(splat.means)
    fixed = np.rint(splat.means.astype(np.float64) * (1 << bits)).astype(np.int64) & 0xFFFFFF
    pos = np.empty((n, 3, 3), np.uint8)
    for b in range(3):
        pos[:, :, b] = (fixed >> (8 * b)) & 0xFF
    alphas = _u8(255.0 / (1.0 + np.exp(-splat.opacities.astype(np.float64))))
    colors = _u8((splat.sh0 * COLOR_SCALE + 0.5) * 255.0)
    scales = _u8((splat.scales + 10.0) * 16.0)
    rot = pack_rotations(splat.quats).astype("<u4").view(np.uint8)
    sh = np.zeros((n, 0), np.uint8)
    if splat.sh_degree > 0:
        coeffs = splat.shN  # (N, K, 3): coefficient-major, channel inner, as SPZ stores it
        sh = np.concatenate([_quantize_sh(coeffs[:, :3], 8).reshape(n, -1),
                             _quantize_sh(coeffs[:, 3:], 16).reshape(n, -1)], axis=1)
    return [pos, alphas, colors, scales, rot, sh]


def encode_spz(splat: Splat, version: int = LATEST_VERSION) -> bytes:
    """SPZ bytes of a cleaned splat: version 4 (ZSTD, Niantic's current format) or 3 (gzip)."""
    if version not in WRITABLE_VERSIONS:
        raise CompressionFailed(f"SPZ version {version} cannot be written (only 3 and 4)")
    n, degree = len(splat), splat.sh_degree
    bits = fractional_bits_for(splat.means)
    blocks = [np.ascontiguousarray(b).tobytes() for b in _blocks(splat)]
    aa = FLAG_ANTIALIASED if splat.antialiased else 0
    if version == 3:
        header = LEGACY_HEADER.pack(MAGIC, 3, n, degree, bits, aa, 0)
        return gzip.compress(b"".join([header, *blocks]), compresslevel=6, mtime=0)
    import zstandard

    streams = [b for b in blocks if b]  # Niantic skips empty streams (SH at degree 0)
    from .quant import cpu_cores

    # Multi-threaded ZSTD writes the same single frame per stream (any decoder reads it); level 12
    # single-threaded was 52 s of a 3M SH3 compression on 2 loaded cores.
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=cpu_cores() if len(blocks[0]) > 1 << 22 else 0)
    frames = [cctx.compress(s) for s in streams]
    ext = struct.pack("<III", EXT_COORDINATE_SYSTEM, 4, RDF)
    toc_offset = V4_HEADER.size + len(ext)
    header = V4_HEADER.pack(MAGIC, 4, n, degree, bits, FLAG_EXTENSIONS | aa, len(streams), toc_offset)
    toc = b"".join(struct.pack("<QQ", len(f), len(s)) for f, s in zip(frames, streams, strict=True))
    return b"".join([header, ext, toc, *frames])


def _sizes(version: int, n: int, degree: int) -> list[int]:
    """Byte sizes of the six blocks for a version, count and SH degree."""
    return [(6 if version == 1 else 9) * n, n, 3 * n, 3 * n, (4 if version >= 3 else 3) * n, SH_COMPONENTS[degree] * n]


def _records(data: bytes, start: int, end: int) -> list[tuple[int, bytes]] | None:
    """Extension records in data[start:end], or None when they do not tile it exactly."""
    out, off = [], start
    while off < end:
        if off + 8 > end:
            return None
        kind, length = struct.unpack_from("<II", data, off)
        if kind == 0 or off + 8 + length > end:
            return None
        out.append((kind, data[off + 8:off + 8 + length]))
        off += 8 + length
    return out


def _gunzip(raw: bytes, limit: int) -> bytes:
    """Inflate a gzip stream, refusing more than ``limit`` bytes (a bound set from the header)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ModelInvalid(f"the SPZ gzip stream is corrupt ({exc})", "Export the .spz again") from exc
    if len(out) > limit:
        raise ModelInvalid(f"the SPZ gzip stream holds more than the {limit} bytes its header allows",
                           "Export the .spz again; its header and data disagree")
    if not d.eof:
        raise ModelInvalid("the SPZ gzip stream is truncated", "Copy the .spz again; the transfer did not finish")
    return out


def _check_count(n: int, max_gaussians: int) -> None:
    if n == 0:
        raise ModelInvalid("the SPZ file has 0 Gaussians", "Export a non-empty splat")
    if n > max_gaussians:
        raise ModelInvalid(f"the SPZ file has {n} Gaussians, more than the limit of {max_gaussians}",
                           "Raise --max-gaussians on a machine with more memory, or pass a smaller splat")


def read_spz(path_or_bytes: Path | bytes, *, max_gaussians: int = 10_000_000) -> tuple[Splat, SpzInfo]:
    """Decode SPZ version 1-4 into a :class:`Splat` (in RDF when the file names its frame) and its info."""
    raw = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        head = _gunzip_head(raw)
        magic, version, n, degree, bits, flags, _ = LEGACY_HEADER.unpack(head)
        _check_header(magic, version, n, degree, bits, legacy=True)
        _check_count(n, max_gaussians)
        sizes = _sizes(version, n, degree)
        data = _gunzip(raw, LEGACY_HEADER.size + sum(sizes) + MAX_EXTENSION_BYTES)
        start, records = _legacy_layout(data, sizes, flags, n)
        blocks, off = [], start
        for size in sizes:
            blocks.append(np.frombuffer(data, np.uint8, size, off))
            off += size
    elif len(raw) >= 4 and struct.unpack_from("<I", raw)[0] == MAGIC:
        if len(raw) < V4_HEADER.size:
            raise ModelInvalid(f"the SPZ file is truncated ({len(raw)} bytes, less than its 32-byte header)",
                               "Copy the .spz again; the transfer did not finish")
        magic, version, n, degree, bits, flags, nstreams, toc = V4_HEADER.unpack_from(raw)
        _check_header(magic, version, n, degree, bits, legacy=False)
        _check_count(n, max_gaussians)
        sizes = _sizes(version, n, degree)
        records = _records(raw, V4_HEADER.size, toc) if flags & FLAG_EXTENSIONS else []
        if toc < V4_HEADER.size or records is None:
            raise ModelInvalid(f"the SPZ extension zone [32, {toc}) is malformed", "Export the .spz again")
        blocks = _zstd_blocks(raw, toc, nstreams, [s for s in sizes if s])
        if not sizes[5]:
            blocks.append(np.zeros(0, np.uint8))
    else:
        raise ModelInvalid("not an SPZ file (neither gzip nor the NGSP magic)", "Pass a .spz written by an SPZ tool")
    info = SpzInfo(version, n, min(degree, 3), bits, bool(flags & FLAG_ANTIALIASED),
                   [(k, len(p)) for k, p in records], dropped_sh_band4=degree == 4)
    splat = _unpack(blocks, version, n, degree, bits)
    splat.antialiased = info.antialiased
    for kind, payload in records:
        if kind == EXT_COORDINATE_SYSTEM:
            splat, info.coordinate_system = _to_rdf(splat, payload)
    return splat, info


def decode_spz(path_or_bytes: Path | bytes, *, max_gaussians: int = 10_000_000) -> Splat:
    """Read any SPZ version into a :class:`Splat` (see :func:`read_spz`)."""
    return read_spz(path_or_bytes, max_gaussians=max_gaussians)[0]


def _gunzip_head(raw: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(raw, LEGACY_HEADER.size)
    except zlib.error as exc:
        raise ModelInvalid(f"the SPZ gzip stream is corrupt ({exc})", "Export the .spz again") from exc
    if len(head) < LEGACY_HEADER.size:
        raise ModelInvalid("the SPZ file is truncated inside its header", "Copy the .spz again")
    return head


def _check_header(magic: int, version: int, n: int, degree: int, bits: int, *, legacy: bool) -> None:
    if magic != MAGIC:
        raise ModelInvalid(f"not an SPZ file (magic {magic:#x}, expected NGSP)", "Pass a .spz written by an SPZ tool")
    if not (1 <= version <= 3 if legacy else version == 4):
        known = "1-3 in a gzip stream" if legacy else "4 with a 32-byte header"
        raise ModelInvalid(f"SPZ version {version} is not supported (known: {known})",
                           "Export the splat as SPZ version 3 or 4, or as a PLY")
    if degree > 4 or bits > 23:
        raise ModelInvalid(f"the SPZ header is corrupt (SH degree {degree}, {bits} fractional bits)",
                           "Export the .spz again")


def _legacy_layout(data: bytes, sizes: list[int], flags: int, n: int) -> tuple[int, list[tuple[int, bytes]]]:
    """Offset of the first block in an inflated legacy file, and its extension records."""
    h, payload = LEGACY_HEADER.size, sum(sizes)
    extra = len(data) - h - payload
    if extra < 0:
        raise ModelInvalid(f"the SPZ payload is truncated: {len(data) - h} bytes for {n} Gaussians, which need "
                           f"{payload}", "Copy the .spz again, or export it again; its count does not match its data")
    if extra == 0:
        return h, []
    if flags & FLAG_EXTENSIONS:
        tail = _records(data, h + payload, len(data))
        if tail is not None:
            return h, tail
        lead = _records(data, h, h + extra)
        if lead is not None:
            return h + extra, lead
    raise ModelInvalid(f"the SPZ payload has {extra} bytes more than {n} Gaussians need",
                       "Export the .spz again; its count does not match its data")


def _zstd_blocks(raw: bytes, toc: int, nstreams: int, expected: list[int]) -> list[np.ndarray]:
    import zstandard

    if nstreams != len(expected):
        raise ModelInvalid(f"the SPZ v4 file has {nstreams} streams; its header needs {len(expected)}",
                           "Export the .spz again")
    toc_end = toc + 16 * nstreams
    if toc_end > len(raw):
        raise ModelInvalid("the SPZ v4 file is truncated inside its table of contents", "Copy the .spz again")
    entries = [struct.unpack_from("<QQ", raw, toc + 16 * i) for i in range(nstreams)]
    for i, ((_, usize), want) in enumerate(zip(entries, expected, strict=True)):
        if usize != want:
            raise ModelInvalid(f"SPZ v4 stream {i} holds {usize} bytes but the header's count needs {want}",
                               "Export the .spz again; its count does not match its streams")
    total = toc_end + sum(c for c, _ in entries)
    if total != len(raw):
        what = "truncated" if total > len(raw) else f"followed by {len(raw) - total} stray bytes"
        raise ModelInvalid(f"the SPZ v4 file is {what} ({len(raw)} bytes, its TOC says {total})",
                           "Copy the .spz again; the transfer did not finish" if total > len(raw) else
                           "Export the .spz again")
    dctx = zstandard.ZstdDecompressor()
    out, off = [], toc_end
    for i, (csize, usize) in enumerate(entries):
        try:
            block = dctx.decompress(raw[off:off + csize], max_output_size=usize)
        except zstandard.ZstdError as exc:
            raise ModelInvalid(f"SPZ v4 stream {i} is corrupt ({exc})", "Export the .spz again") from exc
        if len(block) != usize:
            raise ModelInvalid(f"SPZ v4 stream {i} decompresses to {len(block)} bytes, not {usize}",
                               "Export the .spz again")
        out.append(np.frombuffer(block, np.uint8))
        off += csize
    return out


def _unpack(blocks: list[np.ndarray], version: int, n: int, degree: int, bits: int) -> Splat:
    if version == 1:
        means = blocks[0].view("<f2").reshape(n, 3).astype(np.float32)
    else:
        p = blocks[0].reshape(n, 3, 3).astype(np.int64)
        v = p[:, :, 0] | (p[:, :, 1] << 8) | (p[:, :, 2] << 16)
        v = np.where(v & 0x800000, v - (1 << 24), v)
        means = (v / float(1 << bits)).astype(np.float32)
    a = np.clip(blocks[1] / 255.0, 1e-6, 1 - 1e-6)  # splat-transform's clamp (Niantic's is 1/255)
    opac = np.log(a / (1 - a)).astype(np.float32)
    sh0 = ((blocks[2].reshape(n, 3) / 255.0 - 0.5) / COLOR_SCALE).astype(np.float32)
    scales = (blocks[3].reshape(n, 3) / 16.0 - 10.0).astype(np.float32)
    quats = unpack_rotations(blocks[4].copy().view("<u4")) if version >= 3 else _first_three(blocks[4])
    k = SH_COMPONENTS[degree] // 3
    shn = (blocks[5].reshape(n, k, 3).astype(np.float32) - 128.0) / 128.0
    shn = shn[:, :15]  # degree 4: drop band 4 (coefficients 15-23)
    return Splat(means=means, scales=scales, quats=quats, opacities=opac, sh0=sh0,
                 shN=np.ascontiguousarray(shn, dtype=np.float32))


def axis_signs(system: int) -> np.ndarray:
    """Signs that take coordinates in CoordinateSystem ``system`` (1-8) to RDF (x right, y down, z forward)."""
    name = COORDINATE_SYSTEMS[system]
    return np.array([1.0 if name[0] == "R" else -1.0, 1.0 if name[1] == "D" else -1.0,
                     1.0 if name[2] == "F" else -1.0])


def flip_axes(splat: Splat, signs: np.ndarray) -> Splat:
    """The splat mirrored by diag(signs): positions, rotations (R -> S R S) and SH coefficients."""
    sx, sy, sz = signs
    q = splat.quats * np.array([1.0, sy * sz, sx * sz, sx * sy], np.float32)
    k = splat.shN.shape[1]
    sh_sign = np.prod(np.where(SH_PARITY[:k] == 1, signs[None, :], 1.0), axis=1).astype(np.float32)
    return Splat(means=(splat.means * signs).astype(np.float32), scales=splat.scales, quats=q.astype(np.float32),
                 opacities=splat.opacities, sh0=splat.sh0, shN=splat.shN * sh_sign[None, :, None],
                 antialiased=splat.antialiased)


def _to_rdf(splat: Splat, payload: bytes) -> tuple[Splat, str | None]:
    if len(payload) != 4:
        raise ModelInvalid(f"the SPZ coordinate-system extension has {len(payload)} bytes, not 4", "Export the .spz again")
    system = struct.unpack("<I", payload)[0]
    if system == 0:
        return splat, None  # UNSPECIFIED: raw
    if system not in COORDINATE_SYSTEMS:
        raise ModelInvalid(f"the SPZ file stores its splat in coordinate system {system}, which is not supported "
                           "(known: 0-8, axis sign flips of RDF)", "Export the .spz in RDF, RUB or unspecified axes")
    signs = axis_signs(system)
    return (splat if (signs > 0).all() else flip_axes(splat, signs)), COORDINATE_SYSTEMS[system]
