"""Niantic SPZ version 3: encoder and decoder (https://github.com/nianticlabs/spz).

One gzip stream of a 16-byte header (magic ``NGSP`` 0x5053474e, version 3, point count, SH
degree, fractional bits, flags, reserved) followed by attribute blocks for all points: positions
(3 x signed 24-bit fixed point), alphas (sigmoid x 255), colours (DC x 0.15 + 0.5, x 255),
log-scales ((s + 10) x 16), rotations (smallest-three: 2-bit index of the largest component and
three 10-bit signed values, x y z w order) and SH (coefficient-major, channel inner, byte =
x x 128 + 128 rounded to 5 bits for band 1 and 4 bits above, as Niantic's packer does).
Coordinates are stored as given (splat-transform reads them "unspecified", i.e. raw).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from spaceport.errors import CompressionFailed, ModelInvalid
from spaceport.splat import Splat

MAGIC = 0x5053474E
VERSION = 3
COLOR_SCALE = 0.15
SH_COMPONENTS = [0, 9, 24, 45]
C_MASK = (1 << 9) - 1


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


def encode_spz(splat: Splat) -> bytes:
    """SPZ v3 bytes (gzip) for a cleaned splat."""
    n = len(splat)
    degree = splat.sh_degree
    bits = fractional_bits_for(splat.means)
    header = struct.pack("<IIIBBBB", MAGIC, VERSION, n, degree, bits, 0, 0)
    fixed = np.rint(splat.means.astype(np.float64) * (1 << bits)).astype(np.int64) & 0xFFFFFF
    pos = np.empty((n, 3, 3), np.uint8)
    for b in range(3):
        pos[:, :, b] = (fixed >> (8 * b)) & 0xFF
    alphas = _u8(255.0 / (1.0 + np.exp(-splat.opacities.astype(np.float64))))
    colors = _u8((splat.sh0 * COLOR_SCALE + 0.5) * 255.0)
    scales = _u8((splat.scales + 10.0) * 16.0)
    rot = pack_rotations(splat.quats).astype("<u4")
    sh = np.zeros((n, 0), np.uint8)
    if degree > 0:
        coeffs = splat.shN  # (N, K, 3): coefficient-major, channel inner, as SPZ stores it
        sh = np.concatenate([_quantize_sh(coeffs[:, :3], 8).reshape(n, -1),
                             _quantize_sh(coeffs[:, 3:], 16).reshape(n, -1)], axis=1)
    body = b"".join([header, pos.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(),
                     rot.tobytes(), sh.tobytes()])
    return gzip.compress(body, compresslevel=6, mtime=0)


def decode_spz(path_or_bytes: Path | bytes) -> Splat:
    """Read SPZ version 2 or 3 (gzip) into a :class:`Splat`."""
    raw = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    try:
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError) as exc:
        raise ModelInvalid(f"SPZ gzip stream is corrupt ({exc})") from exc
    if len(data) < 16:
        raise ModelInvalid("SPZ file is too small")
    magic, version, n, degree, bits, _flags, _ = struct.unpack("<IIIBBBB", data[:16])
    if magic != MAGIC or version not in (2, 3) or degree > 3:
        raise ModelInvalid(f"not an SPZ v2/v3 file (magic {magic:#x}, version {version}, degree {degree})")
    nsh = SH_COMPONENTS[degree]
    rot_bytes = 3 if version == 2 else 4
    sizes = [9 * n, n, 3 * n, 3 * n, rot_bytes * n, nsh * n]
    if len(data) < 16 + sum(sizes):
        raise ModelInvalid(f"SPZ payload is truncated ({len(data)} bytes for {n} points)")
    off = 16
    blocks = []
    for size in sizes:
        blocks.append(np.frombuffer(data, np.uint8, size, off))
        off += size
    p = blocks[0].reshape(n, 3, 3).astype(np.int64)
    v = p[:, :, 0] | (p[:, :, 1] << 8) | (p[:, :, 2] << 16)
    v = np.where(v & 0x800000, v - (1 << 24), v)
    means = (v / float(1 << bits)).astype(np.float32)
    a = np.clip(blocks[1] / 255.0, 1e-6, 1 - 1e-6)
    opac = np.log(a / (1 - a)).astype(np.float32)
    sh0 = ((blocks[2].reshape(n, 3) / 255.0 - 0.5) / COLOR_SCALE).astype(np.float32)
    scales = (blocks[3].reshape(n, 3) / 16.0 - 10.0).astype(np.float32)
    if version == 2:
        xyz = blocks[4].reshape(n, 3) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0, 1 - (xyz * xyz).sum(1)))
        quats = np.concatenate([w[:, None], xyz], 1).astype(np.float32)
    else:
        quats = unpack_rotations(blocks[4].copy().view("<u4"))
    shn = ((blocks[5].reshape(n, nsh // 3, 3).astype(np.float32) - 128.0) / 128.0)
    return Splat(means=means, scales=scales, quats=quats, opacities=opac, sh0=sh0,
                 shN=np.ascontiguousarray(shn, dtype=np.float32))
