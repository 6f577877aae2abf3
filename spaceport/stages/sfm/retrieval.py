"""Image retrieval for large unordered sets, without a downloaded vocabulary tree.

COLMAP's scalable matcher needs a pre-trained vocabulary tree, which a job cannot download. So
a small visual vocabulary is learned from the upload's own SIFT descriptors (k-means on a
sample), each image becomes a tf-idf bag of visual words, and each image is paired with its
``k`` most similar images (cosine similarity). Matching ``~n*k`` pairs instead of ``n^2/2`` is
what makes large sets fast. Reads the COLMAP database with the stdlib's sqlite3.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np


def read_descriptors(database: Path) -> tuple[list[str], list[np.ndarray]]:
    """Image names and their SIFT descriptors (uint8, (n, 128)) from a COLMAP database."""
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        names = dict(con.execute("SELECT image_id, name FROM images"))
        descs = {}
        for image_id, rows, cols, blob in con.execute("SELECT image_id, rows, cols, data FROM descriptors"):
            descs[image_id] = np.frombuffer(blob, dtype=np.uint8).reshape(rows, cols) if rows else np.zeros((0, 128), np.uint8)
    finally:
        con.close()
    ids = sorted(names)
    return [names[i] for i in ids], [descs.get(i, np.zeros((0, 128), np.uint8)) for i in ids]


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 8) -> np.ndarray:
    centres = x[rng.choice(len(x), size=k, replace=False)].copy()
    for _ in range(iters):
        labels = _assign(x, centres)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=k)
        empty = counts == 0
        centres[~empty] = sums[~empty] / counts[~empty, None]
        centres[empty] = x[rng.choice(len(x), size=int(empty.sum()), replace=False)]
    return centres


def _assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # argmin |x - c|^2 = argmax (x.c - |c|^2 / 2)
    return np.argmax(x @ centres.T - 0.5 * (centres * centres).sum(1), axis=1)


def retrieval_pairs(database: Path, k: int, words: int = 1024, sample: int = 20_000, per_image: int = 1500,
                    seed: int = 0) -> list[tuple[str, str]]:
    """Pairs (name_a, name_b), each image with its ``k`` nearest images by tf-idf bag-of-words similarity.

    The vocabulary (``words`` centres) is learned from ``sample`` descriptors drawn across the
    images; each image's histogram uses at most ``per_image`` of its descriptors (a random
    subset describes the image as well as all of them, at a fraction of the cost).
    """
    names, descs = read_descriptors(database)
    n = len(names)
    if n < 2:
        return []
    rng = np.random.default_rng(seed)
    take = max(1, sample // n)
    pool = np.concatenate([d[rng.permutation(len(d))[:take]] for d in descs if len(d)]).astype(np.float32)
    words = int(min(words, max(2, len(pool) // 20)))
    centres = _kmeans(pool, words, rng)
    hist = np.zeros((n, words), np.float32)
    for i, d in enumerate(descs):
        if len(d):
            d = d[rng.permutation(len(d))[:per_image]]
            hist[i] = np.bincount(_assign(d.astype(np.float32), centres), minlength=words)
    idf = np.log(n / np.maximum((hist > 0).sum(0), 1)).astype(np.float32)
    vec = hist / np.maximum(hist.sum(1, keepdims=True), 1) * idf
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    sim = vec @ vec.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, n - 1)
    nearest = np.argsort(-sim, axis=1)[:, :k]
    pairs = {(min(i, int(j)), max(i, int(j))) for i in range(n) for j in nearest[i]}
    return [(names[a], names[b]) for a, b in sorted(pairs)]
