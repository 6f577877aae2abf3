"""Turn an upload (folder, zip, video or a folder holding one of those) into a folder of usable images.

The input is only ever read: a zip is extracted into the working folder after every entry has
been checked (no ``../``, absolute paths or links; entry count and extracted bytes capped, both
as declared and as actually streamed), a video is sampled by :mod:`spaceport.stages.sfm.video`. Every image is decoded
once with Pillow: EXIF orientation applied, downscaled to ``max_side``, and undecodable files
skipped and counted. Never imports pycolmap (see :mod:`spaceport.stages.sfm`).
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import model_validator

from spaceport.core.errors import (
    CorruptArchive,
    EmptyInput,
    TooFewImages,
    UnsafeArchive,
    UnsupportedInput,
)
from spaceport.core.files import sniff_file
from spaceport.core.summaries import IngestSummary
from spaceport.geometry.exif import EXIF_IFD, EXIF_ORIENTATION, MAKE, MODEL
from spaceport.stages.sfm.config import SfmConfig
from spaceport.stages.sfm.video import from_video

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif"}
VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".3gp"}
#: EXIF tags kept on re-encoded images (orientation reset to 1): COLMAP groups cameras and seeds
#: the focal length from Make, Model and FocalLength / FocalLengthIn35mmFilm (EXIF sub-IFD).
#: Largest image Pillow may decode (pixels); its default (~179 MP) would refuse big panoramas.
MAX_IMAGE_PIXELS = 400_000_000
CHUNK = 1 << 20


class Ingested(IngestSummary):
    """What :func:`ingest` made of the upload: its summary, plus the usable images' names in order
    (a video's in temporal order, which sequential matching relies on)."""

    names: list[str]

    @model_validator(mode="after")
    def _usable_counts_the_names(self) -> Ingested:
        if self.usable != len(self.names):
            raise ValueError(f"usable={self.usable} but {len(self.names)} image names")
        return self

    def summary(self) -> IngestSummary:
        return IngestSummary.model_validate(self.model_dump(exclude={"names"}))


def ingest(source: Path, work: Path, config: SfmConfig) -> Ingested:
    """Resolve ``source`` and write its usable images to ``work/images``; raise a typed error on bad input."""
    source = Path(source)
    images_dir = work / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    kind, target = resolve(source)
    if kind == "zip":
        extracted, left_out = safe_extract(target, work / "unzipped", config)
        inner_kind, inner = resolve(extracted, inside_archive=True)
        if inner_kind == "zip":  # a zip inside a zip: one level, sharing the same caps
            extracted, more = safe_extract(inner, work / "unzipped2", config)
            left_out += more
            inner_kind, inner = resolve(extracted, inside_archive=True)
        if inner_kind == "zip":
            raise UnsupportedInput("The zip holds zips nested more than one level deep", "Upload one zip of images")
        make = _from_video if inner_kind == "video" else _from_images
        result = make(inner, images_dir, config, "zip")
        result = result.model_copy(update={"skipped_other": result.skipped_other + left_out})
    elif kind == "video":
        result = _from_video(target, images_dir, config, "video")
    else:
        result = _from_images(target, images_dir, config, "images")
    if result.usable < config.min_images:
        raise TooFewImages(
            f"Only {result.usable} usable image(s) in the upload ({result.corrupt} unreadable), "
            f"and SfM needs at least {config.min_images}",
            usable=result.usable, corrupt=result.corrupt, minimum=config.min_images,
        )
    return result


def camera_mode(ing: Ingested, config: SfmConfig) -> str:
    """The COLMAP camera mode (AUTO, SINGLE, PER_IMAGE) for ``config.single_camera`` on this upload.

    ``auto``: a video's frames are one camera; photos go to COLMAP's AUTO grouping (same EXIF make,
    model, focal and pixel size share a camera, with the EXIF focal length as the prior), except when
    no photo names its camera and all have one size (exported frames, renders): AUTO would then give
    every image its own camera, so they share one.
    """
    if config.single_camera is True:
        return "SINGLE"
    if config.single_camera is False:
        return "PER_IMAGE"
    if ing.media == "video" or (ing.exif_cameras == 0 and ing.sizes <= 1):
        return "SINGLE"
    return "AUTO"


# ---------------------------------------------------------------- what is it?
def _visible_files(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in rel):
            continue
        if p.is_symlink():
            continue  # never follow links out of the upload
        if p.is_file():
            out.append(p)
    return out


def _sniff(path: Path) -> str:
    """"zip", "video", "image" or "unknown": the first bytes, else the extension (one sniffer: spaceport.core.files)."""
    return sniff_file(path, IMAGE_EXTS, VIDEO_EXTS)


def resolve(source: Path, inside_archive: bool = False) -> tuple[str, Path]:
    """Classify an upload: ("images", folder), ("zip", file) or ("video", file). Raises on bad input."""
    what = "The zip" if inside_archive else "The upload"
    if not source.exists():
        raise EmptyInput(f"{source} does not exist", "Point the stage at an uploaded folder, zip or video")
    if source.is_dir():
        files = _visible_files(source)
        if not files:
            raise EmptyInput(f"{what} holds no files")
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
        if images:
            return "images", source
        if len(files) == 1:
            return resolve(files[0], inside_archive)
        raise UnsupportedInput(f"{what} holds {len(files)} files but no images (.jpg, .png, .heic) and not one zip or video")
    if source.stat().st_size == 0:
        raise EmptyInput(f"{what} {source.name} is empty (0 bytes)")
    kind = _sniff(source)
    if kind == "zip":
        return "zip", source
    if kind == "video":
        return "video", source
    if kind == "image":
        return "images", source
    if source.suffix.lower() == ".zip":
        raise CorruptArchive(f"{source.name} is not a readable zip archive", "Re-create the zip and upload it again")
    raise UnsupportedInput(f"{source.name} is not an image, a zip archive or a video")


# ---------------------------------------------------------------- zip
_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"The zip entry {info.filename!r} is a symbolic link", entry=info.filename)
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchive(f"The zip entry {info.filename!r} has an absolute path", entry=info.filename)
    if ".." in PurePosixPath(name).parts:
        raise UnsafeArchive(f"The zip entry {info.filename!r} points outside the archive (..)", entry=info.filename)


def safe_extract(archive: Path, dest: Path, config: SfmConfig) -> tuple[Path, int]:
    """Extract the image and video entries of ``archive`` into ``dest`` after checking all entries.

    Refuses links, absolute and ``..`` paths (UnsafeArchive), more than ``max_files`` entries or
    more than ``max_extracted_mb`` MiB declared or actually streamed (UnsafeArchive: zip bomb),
    and unreadable archives (CorruptArchive). Other files are left out; returns (dest, how many).
    """
    limit = config.max_extracted_mb * 1024 * 1024
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CorruptArchive(f"{archive.name} is not a readable zip archive ({exc})", "Re-create the zip and upload it again") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > config.max_files:
            raise UnsafeArchive(f"The zip has {len(infos)} entries, more than the limit of {config.max_files} (zip bomb?)",
                                "Upload fewer files, or raise max_files", entries=len(infos), limit=config.max_files)
        for info in infos:
            _check_entry(info)
        files = [i for i in infos if not i.is_dir()]
        if not files:
            raise EmptyInput("The zip holds no files")
        wanted = [i for i in files if PurePosixPath(i.filename).suffix.lower() in IMAGE_EXTS | VIDEO_EXTS | {".zip"}]
        left_out = len(files) - len(wanted)
        declared = sum(i.file_size for i in wanted)
        if declared > limit:
            raise UnsafeArchive(f"The zip would extract to {declared / 2**20:.0f} MiB, more than the limit of "
                                f"{config.max_extracted_mb} MiB (zip bomb?)", "Upload a smaller zip, or raise max_extracted_mb",
                                declared_bytes=declared, limit_bytes=limit)
        dest.mkdir(parents=True, exist_ok=True)
        total = 0
        for info in wanted:
            rel = PurePosixPath(info.filename.replace("\\", "/"))
            if any(part.startswith(".") or part == "__MACOSX" for part in rel.parts):
                continue
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        total += len(chunk)
                        # the declared size can lie; the bytes actually inflated cannot
                        if written > info.file_size or total > limit:
                            raise UnsafeArchive(
                                f"The zip entry {info.filename!r} inflates beyond its declared size or the "
                                f"{config.max_extracted_mb} MiB limit (zip bomb?)", entry=info.filename, limit_bytes=limit)
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                raise CorruptArchive(f"The zip entry {info.filename!r} cannot be read ({exc})",
                                     "Re-create the zip and upload it again", entry=info.filename) from exc
    return dest, left_out


# ---------------------------------------------------------------- images
def _flat_name(rel: PurePosixPath, used: set[str], suffix: str) -> str:
    stem = "__".join(rel.with_suffix("").parts)
    name = stem + suffix
    k = 1
    while name.lower() in used:
        name = f"{stem}_{k}{suffix}"
        k += 1
    used.add(name.lower())
    return name


def _open_images():
    """Pillow with the HEIF opener registered (pillow-heif: iPhone photos are HEIC)."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    return Image


def _from_images(source: Path, out: Path, config: SfmConfig, kind: Literal["images", "zip"]) -> Ingested:
    from PIL import ImageOps

    Image = _open_images()
    if source.is_file():
        files, root = [source], source.parent
    else:
        files, root = _visible_files(source), source
    n: Counter[str] = Counter()
    names: list[str] = []
    used: set[str] = set()
    sizes: set[tuple[int, int]] = set()
    for path in files:
        if path.suffix.lower() not in IMAGE_EXTS and _sniff(path) != "image":
            n["skipped_other"] += 1
            continue
        n["input_files"] += 1
        try:
            with Image.open(path) as im:
                fmt, original = im.format, im.size
                if fmt == "JPEG":
                    im.draft("RGB", (config.max_side, config.max_side))  # decode at a reduced scale when possible
                im.load()
                exif = im.getexif()
                orientation = exif.get(EXIF_ORIENTATION, 1)
                img = ImageOps.exif_transpose(im) if orientation != 1 else im
                if img.mode not in ("RGB", "L"):
                    img = img.convert("RGB")
                changed = img is not im or im.size != original
                w, h = img.size
                if max(w, h) > config.max_side:
                    s = config.max_side / max(w, h)
                    img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
                    changed = True
                n["downscaled"] += max(original) > config.max_side
                sizes.add(img.size)
                n["exif_cameras"] += _names_camera(exif)
                n["exif_rotated"] += orientation != 1
                rel = PurePosixPath(path.relative_to(root).as_posix())
                if not changed and fmt in ("JPEG", "PNG"):
                    name = _flat_name(rel, used, path.suffix.lower())
                    shutil.copyfile(path, out / name)
                else:
                    suffix = ".png" if fmt == "PNG" else ".jpg"
                    name = _flat_name(rel, used, suffix)
                    # The pixels are upright now: keep the camera tags, say so in the orientation.
                    if EXIF_ORIENTATION in exif:
                        exif[EXIF_ORIENTATION] = 1
                    kwargs: dict = {"quality": 95} if suffix == ".jpg" else {}
                    if exif:
                        kwargs["exif"] = exif.tobytes()
                    img.save(out / name, **kwargs)
        except (OSError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError, zlib.error):
            n["corrupt"] += 1
            continue
        names.append(name)
    return Ingested(kind=kind, media="images", images_dir=str(out), names=names, usable=len(names),
                    input_files=n["input_files"], corrupt=n["corrupt"], skipped_other=n["skipped_other"],
                    downscaled=n["downscaled"], exif_rotated=n["exif_rotated"], exif_cameras=n["exif_cameras"],
                    sizes=len(sizes), frames_decoded=0, frames_blurry=0, sharpness=[])


def _names_camera(exif) -> bool:
    """Whether the EXIF says which camera took the photo (what COLMAP's AUTO mode groups on)."""
    sub = exif.get_ifd(EXIF_IFD)
    return bool(exif.get(MAKE) and exif.get(MODEL) and (sub.get(0x920A) or sub.get(0xA405)))


def _from_video(path: Path, out: Path, config: SfmConfig, kind: Literal["video", "zip"]) -> Ingested:
    frames = from_video(path, out, config)
    return Ingested(kind=kind, media="video", images_dir=str(out), names=frames.names, usable=len(frames.names),
                    input_files=frames.decoded, corrupt=0, skipped_other=0, downscaled=frames.downscaled,
                    exif_rotated=0, sizes=1, frames_decoded=frames.decoded, frames_blurry=frames.blurry_windows,
                    video_rotation=frames.rotation, sharpness=[round(s, 1) for s in frames.sharpness])  # one size: every frame's
