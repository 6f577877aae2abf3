"""File helpers every part shares: atomic writes, the one safe tarball unpacker, input sniffing.

Stdlib only (the Lambdas bundle it). Each helper exists once here so the rules do not drift:

- :func:`write_atomic` / :func:`write_json`: a temporary file beside the target, then a rename,
  so a reader sees the old file or the new one, never half of one.
- :func:`unpack_members`: extracts chosen regular files from a tarball (SageMaker's
  ``model.tar.gz``) and refuses absolute paths, ``..``, links and devices, and more bytes than a cap.
- :func:`sniff`: what an upload is from its first bytes (zip, video, image), whatever its name.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

from spaceport.core.errors import ModelInvalid, UnsafeArchive


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (same file system: a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically."""
    return write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def unpack_members(archive: Path, dest: Path, *, wanted: Callable[[PurePosixPath], bool],
                   max_bytes: int) -> list[Path]:
    """Extract the regular files of ``archive`` for which ``wanted(relative path)`` is true into ``dest``.

    The whole archive is checked: an absolute path, a ``..`` part, a link or a device anywhere
    raises :class:`UnsafeArchive`, as does writing more than ``max_bytes``; an unreadable or
    truncated archive raises :class:`ModelInvalid`. Files keep their relative folders.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written, out = 0, []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
                    raise UnsafeArchive(f"{archive.name} has a member outside its folder: {member.name!r}",
                                        "Re-create the tarball with relative paths only")
                if member.issym() or member.islnk() or member.isdev() or member.isfifo():
                    raise UnsafeArchive(f"{archive.name} has a link or device member: {member.name!r}",
                                        "Re-create the tarball with regular files only")
                if not member.isfile() or not wanted(name):
                    continue
                written += member.size
                if written > max_bytes:
                    raise UnsafeArchive(f"{archive.name} unpacks to more than {max_bytes / 1e9:.1f} GB",
                                        "Pass a smaller model or raise the cap")
                target = dest.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None  # a regular file always has a stream
                with src, open(target, "wb") as f:
                    _copy_exact(src, f, member.size, archive.name, member.name)
                out.append(target)
    except UnsafeArchive:
        raise
    except ModelInvalid:
        raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ModelInvalid(f"{archive.name} is not a readable tarball ({exc})",
                           "Pass the model.tar.gz written by `spaceport train`") from exc
    return out


def _copy_exact(src: BinaryIO, dst: BinaryIO, size: int, archive: str, member: str) -> None:
    remaining = size
    while remaining > 0:
        block = src.read(min(1 << 24, remaining))  # 16 MiB at a time: a big PLY never sits in memory
        if not block:
            raise ModelInvalid(f"{archive} is truncated inside {member}")
        dst.write(block)
        remaining -= len(block)


#: Leading bytes of the formats an upload may be (zip, ISO-BMFF video, Matroska/WebM, AVI, images).
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: ISO-BMFF / QuickTime top-level boxes a video may start with (old .mov files start with moov/mdat/wide).
_VIDEO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
#: ``ftyp`` brands of still images (HEIC/HEIF/AVIF share the container with mp4/mov).
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif")
Kind = Literal["zip", "video", "image", "unknown"]


def sniff(head: bytes) -> Kind:
    """What an upload is from its first 16 bytes, whatever its name says."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "image" if head[8:12] in _IMAGE_BRANDS else "video"
    if head[4:8] in _VIDEO_BOXES or head.startswith(b"\x1aE\xdf\xa3") or (
            head.startswith(b"RIFF") and head[8:12] == b"AVI "):
        return "video"
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM")) or (
            head.startswith(b"RIFF") and head[8:12] == b"WEBP"):
        return "image"
    return "unknown"


def sniff_file(path: Path, image_exts: Collection[str] = (), video_exts: Collection[str] = ()) -> Kind:
    """:func:`sniff` of a file's first bytes; when they say nothing, its (lower-cased) suffix decides."""
    with open(path, "rb") as f:
        kind = sniff(f.read(16))
    if kind != "unknown":
        return kind
    ext = Path(path).suffix.lower()
    return "video" if ext in video_exts else "image" if ext in image_exts else "unknown"
