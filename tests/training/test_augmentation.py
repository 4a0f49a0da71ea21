"""Augmentation: seeded, varied, validated."""

from __future__ import annotations

import numpy as np
import pytest

from semcontrib.training import (
    AugmentConfig,
    TrainConfig,
    augment_rgb,
)

# --------------------------------------------------------------------------- augmentation


def test_augmentation_is_seeded_and_varies():
    rgb = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    a = augment_rgb(rgb, 32, np.random.default_rng(1))
    b = augment_rgb(rgb, 32, np.random.default_rng(1))
    c = augment_rgb(rgb, 32, np.random.default_rng(2))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_augment_config_rejects_bad_values():
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="hue"):
        AugmentConfig(hue=0.7)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="uint8"):
        augment_rgb(np.zeros((4, 4), np.uint8), 8, np.random.default_rng(0))
