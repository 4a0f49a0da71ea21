"""The dashboard's embeddings: quality thresholds (kNN accuracy, neighbourhood preservation), never exact
coordinates; placing new images into a rebuilt map; the t-SNE settings in one place."""

from __future__ import annotations

import numpy as np
import pytest

from semcontrib.dashboard import embedding


def _knn_preservation(X: np.ndarray, Y: np.ndarray, k: int = 5) -> float:
    from sklearn.neighbors import NearestNeighbors

    a = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)[1][:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y)[1][:, 1:]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def test_embed_keeps_clusters_apart_and_places_the_rest_with_transform() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(4)
    labels = np.repeat(np.arange(4), 30)
    X = centres[labels] + rng.normal(0, 0.1, (120, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)  # unit rows, as views.embedding_input gives
    from sklearn.neighbors import KNeighborsClassifier

    for max_fit in (1000, 60):  # openTSNE on all, then on 60 with the rest placed by transform
        Y = embedding.embed(X, "tsne", max_fit=max_fit)
        assert Y.shape == (120, 2) and np.isfinite(Y).all()
        acc = KNeighborsClassifier(5).fit(Y, labels).score(Y, labels)
        assert acc > 0.95, (max_fit, acc)
    assert _knn_preservation(X, embedding.embed(X, "tsne")) > 0.3
    with pytest.raises(ValueError, match="algorithm"):
        embedding.embed(X, "mds")
    assert embedding.embed(X[:2]).shape == (2, 2)
    P = embedding.embed(X, "pca")  # the instant layout: principal components
    assert KNeighborsClassifier(5).fit(P, labels).score(P, labels) > 0.9


def test_place_puts_new_points_near_their_cluster_in_a_rebuilt_map() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 40)
    X = np.eye(3)[labels] + rng.normal(0, 0.05, (120, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = embedding.embed(X[:90], "tsne")
    model = embedding.tsne_model(X[:90], Y)  # as the query does for images added to a stored map
    new = embedding.place(model, X[90:])
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(3).fit(Y, labels[:90])
    assert clf.score(new, labels[90:]) > 0.9
    assert embedding.place(model, X[:0]).shape == (0, 2)


def test_tsne_settings_are_read_from_one_place() -> None:
    assert embedding.TSNE.perplexity_for(8) == 2.0 and embedding.TSNE.perplexity_for(10**6) == 30.0
    assert embedding.TSNE.gradient_method(5000) == "bh" and embedding.TSNE.gradient_method(5001) == "fft"
    assert embedding.TSNE.early_exaggeration_iter + embedding.TSNE.n_iter == 375
    with pytest.raises(AttributeError):
        embedding.TSNE.n_iter = 10  # type: ignore[misc]  # frozen


def test_progress_fraction_follows_the_iterations_and_never_goes_back() -> None:
    assert embedding.progress_fraction("x: iteration 375 of about 375") == 0.9
    assert embedding.progress_fraction("x: iteration 150 of about 375") == 0.42
    assert embedding.progress_fraction("placing 10 new images", 0.95) == 0.95
