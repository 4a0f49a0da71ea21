"""The loss and the epoch loop on cached features: hand computations, learning, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from semcontrib.training import (
    TrainConfig,
    TrainingData,
    fit_heads,
    task_balanced_loss,
)

# --------------------------------------------------------------------------- loss


def test_task_balanced_loss_equals_the_hand_computation():
    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
              "b": torch.tensor([[0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])}
    targets = torch.tensor([[0, 2], [1, -1], [-1, 1]])

    def ce(z, y):
        z = np.asarray(z, dtype=np.float64)
        return -(z[y] - math.log(np.exp(z).sum()))

    la = (ce([2, 0], 0) + ce([0, 1], 1)) / 2 / math.log(2)
    lb = (ce([0, 0, 3], 2) + ce([0, 2, 0], 1)) / 2 / math.log(3)
    got = task_balanced_loss(logits, targets, ["a", "b"])
    assert float(got) == pytest.approx((la + lb) / 2, rel=1e-6)


def test_uniform_logits_cost_one_per_task_whatever_the_number_of_classes():
    logits = {"two": torch.zeros(5, 2), "six": torch.zeros(5, 6)}
    targets = torch.tensor([[0, 5], [1, 0], [0, 1], [1, 2], [0, 3]])
    assert float(task_balanced_loss(logits, targets, ["two", "six"])) == pytest.approx(1.0)
    none = task_balanced_loss(logits, torch.full((5, 2), -1), ["two", "six"])
    assert float(none) == 0.0



# --------------------------------------------------------------------------- heads on features


def test_fit_heads_learns_separable_features_and_stops_early():
    from semcontrib.model import HeadSpec, LinearHeads

    rng = np.random.default_rng(0)
    n, f = 120, 8
    y = rng.integers(0, 2, n)
    z = rng.integers(0, 3, n)
    feats = rng.normal(size=(n, 3, f)).astype(np.float32) * 0.3
    feats[:, :, 0] += (2 * y - 1)[:, None] * 2
    feats[:, :, 1] += z[:, None] * 2
    targets = np.stack([y, z], 1)
    targets[:10, 1] = -1  # missing labels are ignored
    heads = LinearHeads(f, [HeadSpec("y", ("0", "1")), HeadSpec("z", ("0", "1", "2"))])

    class M:  # fit_heads only uses .heads
        pass

    m = M()
    m.heads = heads  # type: ignore[attr-defined]
    idx = np.arange(n)
    h = fit_heads(m, feats, TrainingData(targets, ["y", "z"], idx[:100], idx[100:]),  # type: ignore[arg-type]
                  TrainConfig(epochs=300, patience=5, lr=0.05, device="cpu"))
    assert h.stopped_early and len(h.train_loss) < 300
    with torch.no_grad():
        out = heads(torch.from_numpy(feats[100:, 0]))
    assert (out["y"].argmax(1).numpy() == y[100:]).mean() == 1.0
    assert (out["z"].argmax(1).numpy() == z[100:]).mean() >= 0.9
    assert not any(p.requires_grad for p in heads.parameters())


def test_fit_heads_is_deterministic_for_a_seed():
    from semcontrib.model import HeadSpec, LinearHeads

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(40, 3, 6)).astype(np.float32)
    targets = rng.integers(0, 2, (40, 1))

    def run(seed):
        class M:
            heads = LinearHeads(6, [HeadSpec("t", ("a", "b"))])

        m = M()
        fit_heads(m, feats, TrainingData(targets, ["t"], np.arange(30), np.arange(30, 40)),  # type: ignore[arg-type]
                  TrainConfig(epochs=5, seed=seed, batch_size=8, device="cpu"))
        return m.heads.layers["t"].weight.detach().clone()

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
