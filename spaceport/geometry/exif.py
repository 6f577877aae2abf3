"""EXIF tags the stages read, and the figures made from them (stdlib only: PIL's ``Image.Exif`` is
passed in). SfM reads orientation and camera names; training reads exposure and camera names."""

from __future__ import annotations

import math
from typing import Any

EXIF_ORIENTATION = 0x0112
EXIF_IFD = 0x8769
EXPOSURE_TIME, F_NUMBER, ISO = 33434, 33437, 34855
MAKE, MODEL = 0x010F, 0x0110


def exif_exposure(exif: Any) -> float | None:
    """``exposure time x ISO / f-number²`` from a PIL ``Image.Exif``, or None when the time or ISO is
    missing or not positive (a missing f-number counts as fixed: phones have one aperture)."""
    try:
        ifd = exif.get_ifd(EXIF_IFD)
        t, iso, n = ifd.get(EXPOSURE_TIME), ifd.get(ISO), ifd.get(F_NUMBER)
        if isinstance(iso, (tuple, list)):
            iso = iso[0] if iso else None
        t, iso = float(t), float(iso)
        n = float(n) if n is not None and float(n) > 0 else 1.0
    except (TypeError, ValueError, ZeroDivisionError, KeyError, AttributeError):
        return None
    if not (math.isfinite(t) and math.isfinite(iso)) or t <= 0 or iso <= 0:
        return None
    return t * iso / (n * n)


def exif_camera(exif: Any) -> str:
    """The camera's EXIF make and model (``""`` when not recorded)."""
    try:
        return " ".join(str(exif.get(tag) or "").strip().strip("\x00") for tag in (MAKE, MODEL)).strip()
    except (TypeError, ValueError, AttributeError):
        return ""
