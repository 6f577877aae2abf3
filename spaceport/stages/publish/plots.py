"""Small plots for the report, drawn with Pillow and returned as PNG bytes.

Why Pillow and not matplotlib: the report needs three plain chart kinds (lines, a 2-D scatter,
bars), Pillow is already a dependency of every stage image, and matplotlib would add ~40 MB and
a font cache build to the publish image for no visible gain.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

#: Series colours (colour-blind safe, Okabe-Ito).
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233)]
_W, _H = 640, 360
_MARGIN = (64, 34, 20, 46)  # left, top, right, bottom in pixels


def _font(size: int = 13) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:g}" if abs(v) >= 1 else f"{v:.3g}"


class _Axes:
    def __init__(self, title: str, xlabel: str, ylabel: str, xr: tuple[float, float], yr: tuple[float, float],
                 log_y: bool = False, size: tuple[int, int] = (_W, _H), xticks: bool = True):
        self.img = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.img)
        self.font = _font(13)
        self.log_y = log_y
        left, top, right, bottom = _MARGIN
        self.box = (left, top, size[0] - right, size[1] - bottom)
        self.xr = xr if xr[1] > xr[0] else (xr[0] - 1, xr[0] + 1)
        y0, y1 = (math.log10(yr[0]), math.log10(yr[1])) if log_y else yr
        if y1 <= y0:
            y0, y1 = y0 - 1, y1 + 1
        self.yr = (y0, y1)
        d, f = self.draw, self.font
        d.text((size[0] / 2, 6), title, fill="black", font=_font(15), anchor="ma")
        d.text((size[0] / 2, size[1] - 4), xlabel, fill="black", font=f, anchor="md")
        d.text((4, top - 16), ylabel, fill="black", font=f)
        x0, yt, x1, yb = self.box
        for t in _nice_ticks(*self.xr) if xticks else []:
            if self.xr[0] <= t <= self.xr[1]:
                px = self.px(t, self.yr[0])[0]
                d.line([(px, yt), (px, yb)], fill=(232, 232, 232))
                d.text((px, yb + 4), _label(t), fill="black", font=f, anchor="ma")
        if log_y:
            # Decades, plus 2x and 5x when the axis spans less than two decades.
            mults = (1,) if y1 - y0 > 2 else (1, 2, 5)
            yticks = [m * 10**e for e in range(math.floor(y0), math.ceil(y1) + 1) for m in mults]
        else:
            yticks = _nice_ticks(y0, y1)
        for t in yticks:
            tv = math.log10(t) if log_y else t
            if self.yr[0] - 1e-9 <= tv <= self.yr[1] + 1e-9:
                py = self._py(tv)
                d.line([(x0, py), (x1, py)], fill=(232, 232, 232))
                d.text((x0 - 4, py), _label(t), fill="black", font=f, anchor="rm")
        d.rectangle(self.box, outline="black")

    def _py(self, v: float) -> float:
        _x0, yt, _x1, yb = self.box
        return yb - (v - self.yr[0]) / (self.yr[1] - self.yr[0]) * (yb - yt)

    def px(self, x: float, y: float) -> tuple[float, float]:
        x0, _yt, x1, _yb = self.box
        if self.log_y:
            y = math.log10(max(y, 1e-12))
        return (x0 + (x - self.xr[0]) / (self.xr[1] - self.xr[0]) * (x1 - x0), self._py(y))

    def legend(self, names: Sequence[str]) -> None:
        """Legend in the top-right corner on a white box sized to the longest name."""
        width = max(self.draw.textlength(n, font=self.font) for n in names) + 40
        x1, y0 = self.box[2] - 6, self.box[1] + 6
        x0 = x1 - width
        self.draw.rectangle([x0, y0, x1, y0 + 18 * len(names) + 6], fill="white", outline=(200, 200, 200))
        for i, name in enumerate(names):
            colour = PALETTE[i % len(PALETTE)]
            y = y0 + 5 + 18 * i
            self.draw.line([(x0 + 6, y + 7), (x0 + 28, y + 7)], fill=colour, width=3)
            self.draw.text((x0 + 34, y), name, fill="black", font=self.font)

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.img.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def _finite(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points if math.isfinite(float(x)) and math.isfinite(float(y))]


def line_plot(series: dict[str, Sequence[tuple[float, float]]], title: str, xlabel: str, ylabel: str,
              log_y: bool = False) -> bytes:
    """One or more (x, y) series on shared axes."""
    clean = {k: _finite(v) for k, v in series.items()}
    if log_y:
        clean = {k: [(x, y) for x, y in v if y > 0] for k, v in clean.items()}
    pts = [p for v in clean.values() for p in v] or [(0.0, 1.0)]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    ylo, yhi = min(ys), max(ys)
    if not log_y:
        pad = (yhi - ylo) * 0.05 or 1.0
        ylo, yhi = ylo - pad, yhi + pad
    ax = _Axes(title, xlabel, ylabel, (min(xs), max(xs)), (ylo, yhi), log_y=log_y)
    for i, v in enumerate(clean.values()):
        colour = PALETTE[i % len(PALETTE)]
        xy = [ax.px(x, y) for x, y in v]
        if len(xy) > 1:
            ax.draw.line(xy, fill=colour, width=2, joint="curve")
        for p in xy if len(xy) <= 40 else []:
            ax.draw.ellipse([p[0] - 2.5, p[1] - 2.5, p[0] + 2.5, p[1] + 2.5], fill=colour)
    if len(clean) > 1:
        ax.legend(list(clean))
    return ax.png()


def camera_plot(centers: Sequence[Sequence[float]], points: Sequence[Sequence[float]], title: str,
                labels: tuple[str, str] = ("x", "y"), test_mask: Sequence[bool] | None = None) -> bytes:
    """Top-down view of camera centres (ordered path) over a sample of the sparse points (2-D inputs)."""
    cs = [(float(c[0]), float(c[1])) for c in centers]
    ps = [(float(p[0]), float(p[1])) for p in points]
    allp = cs + ps or [(0.0, 0.0)]
    xs, ys = [p[0] for p in allp], [p[1] for p in allp]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    half = max(max(xs) - min(xs), max(ys) - min(ys), 1e-6) / 2 * 1.08
    ax = _Axes(title, labels[0], labels[1], (cx - half, cx + half), (cy - half, cy + half), size=(480, 480))
    for p in ps:
        x, y = ax.px(*p)
        ax.draw.point((x, y), fill=(150, 150, 150))
    xy = [ax.px(*c) for c in cs]
    if len(xy) > 1:
        ax.draw.line(xy, fill=PALETTE[0], width=1)
    for i, p in enumerate(xy):
        held_out = bool(test_mask[i]) if test_mask is not None and i < len(test_mask) else False
        colour = PALETTE[1] if held_out else PALETTE[0]
        ax.draw.ellipse([p[0] - 4, p[1] - 4, p[0] + 4, p[1] + 4], fill=colour)
    if xy:
        ax.draw.text((xy[0][0] + 6, xy[0][1] - 6), "first", fill="black", font=ax.font)
    names = ["cameras (capture order)"] + (["held-out cameras"] if test_mask is not None and any(test_mask) else [])
    ax.legend(names)
    return ax.png()


def bar_plot(values: dict[str, float], title: str, ylabel: str, log_y: bool = False) -> bytes:
    """Labelled vertical bars (e.g. file sizes)."""
    items = [(k, float(v)) for k, v in values.items() if v is not None and math.isfinite(float(v)) and float(v) > 0]
    if not items:
        items = [("none", 1.0)]
    top = max(v for _, v in items)
    lo = min(v for _, v in items) / 2 if log_y else 0.0
    ax = _Axes(title, "", ylabel, (0, len(items)), (lo, top * (2 if log_y else 1.12)), log_y=log_y, xticks=False)
    for i, (name, v) in enumerate(items):
        x0, y0 = ax.px(i + 0.2, v)
        x1, y1 = ax.px(i + 0.8, lo)
        ax.draw.rectangle([x0, y0, x1, y1], fill=PALETTE[i % len(PALETTE)])
        ax.draw.text(((x0 + x1) / 2, y0 - 3), f"{v:.3g}", fill="black", font=ax.font, anchor="md")
        ax.draw.text(((x0 + x1) / 2, ax.box[3] + 4), name, fill="black", font=ax.font, anchor="ma")
    return ax.png()
