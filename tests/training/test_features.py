"""Cached backbone features: independent of DataLoader workers, unreadable files recorded, cache re-read."""

from __future__ import annotations

import numpy as np

from semcontrib.training import extract_features
from tests.conftest import tiny_model
from tests.training.helpers import write_images


def test_workers_cache_and_unreadable_files(tmp_path):
    img = tmp_path / "img"
    write_images(img, [f"{k}.png" for k in range(5)])
    (img / "bad.png").write_bytes(b"truncated")
    paths = sorted(img.glob("*.png"))
    model = tiny_model()
    plain = extract_features(model, paths, n_views=2, seed=3, batch_size=4)
    parallel = extract_features(model, paths, n_views=2, seed=3, batch_size=4, workers=2,
                                cache_dir=tmp_path / "cache")
    bad = [i for i, p in enumerate(paths) if p.name == "bad.png"]
    assert set(plain.reasons) == set(parallel.reasons) == set(bad)
    assert plain.features.shape == (6, 3, 6) and not plain.ok[bad].any()
    np.testing.assert_array_equal(plain.features, parallel.features)
    assert plain.file_hashes == parallel.file_hashes
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 5
    again = extract_features(model, paths, n_views=2, seed=3, batch_size=4, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.features, plain.features)
    other_seed = extract_features(model, paths, n_views=2, seed=4, batch_size=4)
    np.testing.assert_array_equal(other_seed.features[:, 0], plain.features[:, 0])  # view 0 is the image
    assert not np.array_equal(other_seed.features[:, 1:], plain.features[:, 1:])
