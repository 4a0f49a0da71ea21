"""The dashboard's 2-D embeddings of the weighted unit vectors: t-SNE (openTSNE), UMAP and PCA.

Pure functions on arrays (no Dash, no disk). Every t-SNE parameter is in one place, :data:`TSNE`: the
fit (:func:`fit_tsne`), a map rebuilt from stored positions (:func:`tsne_model`) and the placing of new
images into it (:func:`place`) all read it. ``X`` is float64 N x C (rows from
``views.embedding_input``: unit vectors whose Euclidean geometry is the weighted cosine); embeddings are
float64 N x 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

EMBEDDINGS = ("tsne", "umap")


@dataclass(frozen=True)
class TSNESettings:
    """The t-SNE parameters of the dashboard (openTSNE).

    perplexity : at most this (30), and less for small corpora (``(n - 1) / 3.5``, at least 2).
    early_exaggeration_iter, n_iter : the two optimisation phases (125 + 250 iterations).
    fft_above : FFT-accelerated gradients above this many rows, Barnes-Hut below (5,000).
    max_jobs : threads, at most this many (4) and the machine's cores.
    report_every : a progress line every this many iterations (25).
    place_iter : iterations when placing new images into a fitted map (25; see :func:`place`).

    Examples
    --------
    >>> TSNE.perplexity_for(8), TSNE.perplexity_for(100_000), TSNE.gradient_method(10_000)
    (2.0, 30.0, 'fft')
    """

    perplexity: float = 30.0
    early_exaggeration_iter: int = 125
    n_iter: int = 250
    fft_above: int = 5000
    max_jobs: int = 4
    report_every: int = 25
    place_iter: int = 25

    def perplexity_for(self, n: int) -> float:
        return float(min(self.perplexity, max(2.0, (n - 1) / 3.5)))

    def gradient_method(self, n: int) -> str:
        return "fft" if n > self.fft_above else "bh"

    def n_jobs(self) -> int:
        return max(1, min(self.max_jobs, os.cpu_count() or 1))


TSNE = TSNESettings()


def embed(X: np.ndarray, algorithm: str = "tsne", seed: int = 0, max_fit: int = 100_000,
          progress: Callable[[str], None] | None = None) -> np.ndarray:
    """float64 N x 2 embedding of the rows of ``X`` (weighted unit vectors, so distances follow the
    weighted cosine).

    ``tsne``: openTSNE with FFT-accelerated gradients (PCA initialisation, perplexity 30 or less for
    small corpora) on up to ``max_fit`` rows; further rows (a seeded choice of the rest) are placed into
    that map with openTSNE's ``transform``. ``umap``: UMAP on up to ``max_fit`` rows, the rest placed with
    ``UMAP.transform``. ``pca``: the first two principal components (instant; shown while a t-SNE runs).
    """
    if algorithm not in (*EMBEDDINGS, "pca"):
        raise ValueError(f"algorithm must be one of {(*EMBEDDINGS, 'pca')}, got {algorithm!r}")
    if max_fit < 10:
        raise ValueError("max_fit must be >= 10")
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    say = progress or (lambda _msg: None)
    if n == 0:
        return np.zeros((0, 2))
    if n < 4 or algorithm == "pca":
        return pca_2d(X) if n >= 2 else np.zeros((n, 2))
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, size=max_fit, replace=False)) if n > max_fit else np.arange(n)
    # tiny jitter separates identical rows (zero vectors, duplicates), which t-SNE/UMAP dislike
    Xf = X[fit_idx] + rng.normal(0, 1e-6, (len(fit_idx), X.shape[1]))
    rest = np.setdiff1d(np.arange(n), fit_idx)
    Y = np.zeros((n, 2))
    if algorithm == "tsne":
        model = fit_tsne(Xf, seed, say)
        Y[fit_idx] = np.asarray(model)
        if len(rest):
            say(f"placing {len(rest)} more images into the map (openTSNE transform)")
            Y[rest] = place(model, X[rest])
    else:
        import umap

        say(f"embedding {len(fit_idx)} images with UMAP")
        reducer = umap.UMAP(n_neighbors=int(min(15, len(Xf) - 1)), random_state=seed, n_jobs=1,
                            init="random" if len(Xf) < 20 else "spectral")
        Y[fit_idx] = reducer.fit_transform(Xf)
        if len(rest):
            say(f"placing {len(rest)} more images into the map (UMAP transform)")
            Y[rest] = reducer.transform(X[rest])
    return Y


def fit_tsne(X: np.ndarray, seed: int, say: Callable[[str], None]) -> Any:
    """An openTSNE ``TSNEEmbedding`` of the rows of ``X`` (keeps what ``transform`` needs), with the
    parameters of :data:`TSNE`; ``say`` gets one line of progress every ``TSNE.report_every`` iterations."""
    import openTSNE

    n = len(X)
    total = TSNE.early_exaggeration_iter + TSNE.n_iter
    done = {"phase_start": 0, "last": 0}

    def report(iteration: int, error: float, embedding: Any) -> None:
        # openTSNE counts the early-exaggeration phase and the main phase from 0 each: keep one count
        if iteration < done["last"]:
            done["phase_start"] += done["last"]
        done["last"] = iteration
        say(f"t-SNE of {n} images: iteration {done['phase_start'] + iteration} of about {total}")

    say(f"t-SNE of {n} images: nearest neighbours")
    tsne = openTSNE.TSNE(n_components=2, perplexity=TSNE.perplexity_for(n), initialization="pca",
                         random_state=seed, negative_gradient_method=TSNE.gradient_method(n),
                         early_exaggeration_iter=TSNE.early_exaggeration_iter, n_iter=TSNE.n_iter,
                         n_jobs=TSNE.n_jobs(), callbacks=report, callbacks_every_iters=TSNE.report_every,
                         verbose=False)
    return tsne.fit(X)


def place(model: Any, X_new: np.ndarray, n_iter: int | None = None) -> np.ndarray:
    """float64 M x 2: rows ``X_new`` placed into a fitted openTSNE map (``TSNEEmbedding.transform``).

    The existing points stay where they are; each new point is initialised at the median of its 25
    nearest reference points and refined against the fixed map for ``n_iter`` iterations (default
    ``TSNE.place_iter``, 25: measured
    as good as openTSNE's default 250 for the kNN accuracy of placed points on clustered data, at under
    1 ms per image).
    """
    if len(X_new) == 0:
        return np.zeros((0, 2))
    steps = TSNE.place_iter if n_iter is None else n_iter
    return np.asarray(model.transform(np.asarray(X_new, dtype=np.float64), n_iter=steps), dtype=np.float64)


def tsne_model(X_ref: np.ndarray, Y_ref: np.ndarray, seed: int = 0) -> Any:
    """An openTSNE map rebuilt from stored reference rows ``X_ref`` (N x C) and positions ``Y_ref``
    (N x 2), so that images added to the corpus later can be :func:`place`-d without refitting."""
    from openTSNE import TSNEEmbedding, affinity

    n = len(X_ref)
    aff = affinity.PerplexityBasedNN(np.asarray(X_ref, dtype=np.float64), perplexity=TSNE.perplexity_for(n),
                                     n_jobs=TSNE.n_jobs(), random_state=seed)
    return TSNEEmbedding(np.asarray(Y_ref, dtype=np.float64), aff, negative_gradient_method=TSNE.gradient_method(n))


def pca_2d(X: np.ndarray) -> np.ndarray:
    """float64 N x 2: the rows' first two principal components (deterministic signs)."""
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(Xc.T @ Xc if len(X) > X.shape[1] else Xc, full_matrices=False)
    comps = vt[:2] if len(X) > X.shape[1] else vt[:2]
    Y = Xc @ comps.T
    Y *= np.where(Y.sum(axis=0) < 0, -1.0, 1.0)
    if Y.shape[1] < 2:
        Y = np.column_stack([Y, np.zeros(len(Y))])
    return Y


def progress_fraction(message: str, previous: float = 0.0) -> float:
    """How far (0..1) an embedding job is, from its progress message; never goes back.

    Examples
    --------
    >>> progress_fraction("t-SNE of 40 images: iteration 150 of about 375")
    0.42
    >>> progress_fraction("t-SNE of 40 images: nearest neighbours", 0.5)
    0.5
    """
    import re

    found = re.search(r"iteration (\d+) of about (\d+)", message)
    if found:
        value = 0.1 + 0.8 * min(1.0, int(found.group(1)) / max(1, int(found.group(2))))
    elif "nearest neighbours" in message or "embedding" in message:
        value = 0.1
    elif "placing" in message:
        value = 0.9
    else:
        value = 0.02
    return round(max(previous, value), 4)
