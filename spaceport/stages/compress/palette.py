"""The SOG spherical-harmonics palette: how many entries, and the k-means that fills them.

splat-transform sizes the palette by N alone (:func:`palette_size`). ``auto`` instead takes the
smallest power of two from 1024 up to that cap whose palette keeps the view-dependent colour
error (:func:`sh_colour_error`) within a target, and says in its record whether the target was
met, and if not, by how much it was missed at the cap: no silent fallback.

Scale: on a large splat each candidate size is a k-means run over every Gaussian (measured on a
real 500k-Gaussian SH2 splat: 4 candidate runs + the final one, 47 s of a 213 s compression on 2
shared cores). Above :data:`SEARCH_SAMPLE` Gaussians the search therefore runs on a uniform
sample of that many rows; only the chosen size is fitted on all of them, and when its error
on all rows misses the target (a sample's k-means error is optimistic: fewer rows per entry)
the size doubles until it passes or reaches the cap. The palette written is always a full
k-means of every row, as before, so its quality per entry is unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from .quant import kmeans, pick_device

#: Smallest palette the "auto" policy tries (never more than splat-transform's size).
AUTO_PALETTE_MIN = 1024
#: Rows the "auto" search fits its candidate palettes on when the splat has more.
SEARCH_SAMPLE = 131_072


def palette_size(n: int) -> int:
    """splat-transform's SH palette size for N Gaussians: min(64, 2^floor(log2(N/1024))) * 1024."""
    return int(min(64, 2.0 ** math.floor(math.log2(max(n, 1) / 1024))) * 1024)


def sh_colour_error(rest: np.ndarray, centroids: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Weighted RMS error, in 8-bit levels, of the view-dependent colour when ``rest`` -> ``centroids[labels]``.

    The SH basis is orthonormal, so each basis function's square averages 1/(4 pi) over view
    directions: a colour channel's mean squared error is the sum of its coefficients' squared
    errors / (4 pi). ``rest`` rows hold the 3 channels' coefficients; weights are opacities.
    """
    err = np.zeros(len(rest))
    for s in range(0, len(rest), 65536):
        d = rest[s:s + 65536] - centroids[labels[s:s + 65536]]
        err[s:s + 65536] = np.einsum("ij,ij->i", d, d, dtype=np.float64)
    mse = float((err * weights).sum() / max(float(weights.sum()), 1e-30)) / 3 / (4 * math.pi)
    return math.sqrt(mse) * 255


def _bisect(sizes: list[int], passes) -> int:
    """Smallest of the increasing ``sizes`` for which ``passes`` holds (the last one when none does)."""
    if passes(sizes[0]):
        return sizes[0]
    lo, hi = 1, len(sizes) - 1  # sizes[hi] is the fallback; sizes[0] failed
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(sizes[mid]):
            hi = mid
        else:
            lo = mid + 1
    return sizes[hi]


def choose_palette(rest: np.ndarray, weights: np.ndarray, policy: int | str, max_error: float, iterations: int,
                   device: str, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """k-means palette of the SH rows under a size policy; returns (centroids, labels, record for compress.json).

    ``policy``: a number of entries, "splat-transform" (:func:`palette_size`) or "auto" (module
    docstring). The record: policy, entries, colour error of the palette written, the target and
    whether it was met (auto), the cap, the error of every size fitted on all rows (``tried``)
    and, for a sampled search, the sample size and its errors (``search``).
    """
    n = len(rest)
    dev = pick_device(device)
    cap = min(palette_size(n), 65536)
    tried: dict[int, float] = {}
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the palette to write, when already fitted

    def on_all(k: int) -> float:
        if k not in tried:
            c, lab = kmeans(rest, k, iterations, dev, seed)
            tried[k] = sh_colour_error(rest, c, lab, weights)
            if policy != "auto" or tried[k] <= max_error or k == cap:
                kept.clear()
                kept[k] = (c, lab)
        return tried[k]

    search = None
    if policy != "auto":
        chosen = cap if policy == "splat-transform" else min(int(policy), 65536)
    else:
        sizes = [cap]
        while sizes[0] // 2 >= min(AUTO_PALETTE_MIN, cap):
            sizes.insert(0, sizes[0] // 2)
        if n <= SEARCH_SAMPLE:
            chosen = _bisect(sizes, lambda k: on_all(k) <= max_error)
        else:
            idx = np.sort(np.random.default_rng(seed).choice(n, SEARCH_SAMPLE, replace=False))
            sample, sample_w = rest[idx], weights[idx]
            on_sample: dict[int, float] = {}

            def sample_passes(k: int) -> bool:
                c, lab = kmeans(sample, k, max(3, iterations // 2), dev, seed)
                on_sample[k] = sh_colour_error(sample, c, lab, sample_w)
                return on_sample[k] <= max_error

            chosen = _bisect(sizes, sample_passes)
            while on_all(chosen) > max_error and chosen < cap:  # the sample was optimistic: grow
                chosen = min(cap, chosen * 2)
            search = {"sample_rows": SEARCH_SAMPLE, "tried": {str(k): round(v, 4) for k, v in sorted(on_sample.items())}}
    if chosen not in kept:
        kept.clear()
        tried.pop(chosen, None)
        on_all(chosen)
    c, lab = kept[chosen]
    error = tried[chosen]
    record = {"policy": str(policy), "entries": int(min(chosen, n)), "colour_error_levels": round(error, 4),
              "max_error_levels": max_error if policy == "auto" else None,
              "target_met": (error <= max_error) if policy == "auto" else None, "cap": cap,
              "tried": {str(k): round(v, 4) for k, v in sorted(tried.items())}, "search": search, "note": None}
    if record["target_met"] is False:
        record["note"] = (f"colour-error target of {max_error} levels not met within the cap of {cap} entries: "
                          f"the palette written has {record['entries']} entries and an error of "
                          f"{record['colour_error_levels']} levels")
    return c, lab, record
