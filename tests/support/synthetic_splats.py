"""Synthetic splats for the compression tests and benchmark (deterministic, seeded)."""

from __future__ import annotations

import numpy as np

from spaceport.geometry.splat import Splat


def synthetic_splat(n: int, degree: int, seed: int = 0) -> Splat:
    """Gaussians on a few noisy surfaces (sphere, ground plane, box faces) with smooth colours.

    Shaped like a trained scene: positions clustered on surfaces, log-scales around -4 with a
    spread, opacities mostly high, SH DC from position-dependent colours, higher bands small.
    """
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    p = np.empty((n, 3))
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    p[kind == 0] = d[kind == 0] * 1.0 + [0, 0, 1]
    m = kind == 1
    p[m] = np.c_[rng.uniform(-3, 3, (m.sum(), 2)), np.zeros(m.sum())]
    m = kind == 2
    face = rng.integers(0, 3, m.sum())
    q = rng.uniform(-0.5, 0.5, (m.sum(), 3))
    q[np.arange(m.sum()), face] = rng.choice([-0.5, 0.5], m.sum())
    p[m] = q + np.array([1.8, -1.2, 0.5])
    p += rng.normal(scale=0.01, size=p.shape)
    scales = rng.normal(-3.8, 0.5, (n, 3))
    quats = rng.normal(size=(n, 4))
    opac = rng.normal(2.0, 1.5, n)
    col = 0.5 + 0.4 * np.sin(p * [1.7, 2.3, 2.9] + kind[:, None])
    sh0 = (col - 0.5) / 0.28209479177387814
    k = (degree + 1) ** 2 - 1
    shn = rng.normal(scale=0.08, size=(n, k, 3)) * (0.6 ** np.sqrt(np.arange(1, k + 1)))[None, :, None]
    shn += 0.1 * np.sin(p[:, None, :1] * np.arange(1, k + 1)[None, :, None])
    f = np.float32
    return Splat(p.astype(f), scales.astype(f), quats.astype(f), opac.astype(f), sh0.astype(f), shn.astype(f))


def upscaled(splat: Splat, n: int, seed: int = 0) -> Splat:
    """A real (trained) splat grown to ``n`` Gaussians, for benchmarks at a size CPU training cannot reach.

    Each child copies a parent (every parent ``n // N`` or ``n // N + 1`` times), is placed at a
    sample of the parent's Gaussian, shrinks its scales by the cube root of the split factor (the
    children fill the parent's volume), and blends its colour, SH and opacity with those of a
    random other Gaussian among the parent's 8 nearest (t ~ U(0, 0.5)): the children's values stay
    on the trained splat's own distribution instead of repeating it exactly, which would make
    the SH palette trivially small.
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    m = len(splat)
    parent = np.sort(np.concatenate([np.arange(m).repeat(n // m), rng.choice(m, n - (n // m) * m, replace=False)]))
    factor = n / m
    q = splat.quats[parent].astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                    2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                    2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).reshape(-1, 3, 3)
    local = rng.normal(size=(n, 3)) * np.exp(splat.scales[parent].astype(np.float64))
    means = splat.means[parent] + np.einsum("nij,nj->ni", rot, local)
    _, nbrs = cKDTree(splat.means).query(splat.means, k=min(9, m))
    other = nbrs[parent, rng.integers(1, nbrs.shape[1], n)] if m > 1 else parent
    t = rng.uniform(0, 0.5, n).astype(np.float32)

    def blend(a: np.ndarray) -> np.ndarray:
        tt = t.reshape((-1,) + (1,) * (a.ndim - 1))
        return (a[parent] * (1 - tt) + a[other] * tt).astype(np.float32)

    return Splat(means.astype(np.float32), (splat.scales[parent] - np.log(factor) / 3).astype(np.float32),
                 splat.quats[parent].astype(np.float32), blend(splat.opacities), blend(splat.sh0), blend(splat.shN))
