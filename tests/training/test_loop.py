"""The loss and the shared epoch loop: hand computations, learning, determinism, device, state file, resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from semcontrib.training import (
    AugmentConfig,
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


# --------------------------------------------------------------------------- device, state file, resume


def _feature_world(n: int = 60, f: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    feats = rng.normal(size=(n, 3, f)).astype(np.float32)
    feats[:, :, 0] += (2 * y - 1)[:, None]
    data = TrainingData(y[:, None].astype(np.int64), ["t"], np.arange(45), np.arange(45, n))
    return feats, data


def _heads_model(f: int = 6):
    from semcontrib.model import HeadSpec, LinearHeads

    class M:
        heads = LinearHeads(f, [HeadSpec("t", ("a", "b"))])

    return M()


class _Stop(Exception):
    pass


def _stop_at(epoch_to_stop: int):
    def progress(stage, done, total):
        if stage == "epochs" and done == epoch_to_stop:
            raise _Stop

    return progress


def test_fit_heads_resumed_after_an_interruption_ends_as_the_uninterrupted_run(tmp_path):
    from semcontrib.training import StateFile

    feats, data = _feature_world()
    cfg = TrainConfig(epochs=8, patience=100, batch_size=8, lr=0.05, device="cpu")
    whole = _heads_model()
    h_whole = fit_heads(whole, feats, data, cfg)  # type: ignore[arg-type]

    state = StateFile(tmp_path / "m.train_state.pt", {"run": "a"}, resume=True)
    with pytest.raises(_Stop):
        fit_heads(_heads_model(), feats, data, cfg, _stop_at(3), state)  # type: ignore[arg-type]
    assert state.path.is_file()
    resumed = _heads_model()
    h = fit_heads(resumed, feats, data, cfg, None, state)  # type: ignore[arg-type]
    assert h.resumed_at == 3 and h.train_loss == h_whole.train_loss and h.val_loss == h_whole.val_loss
    assert h.best_epoch == h_whole.best_epoch
    for name, p in whole.heads.state_dict().items():
        assert torch.equal(p, resumed.heads.state_dict()[name]), name
    with pytest.raises(ValueError, match="other settings"):
        fit_heads(_heads_model(), feats, data, cfg, None,  # type: ignore[arg-type]
                  StateFile(state.path, {"run": "b"}, resume=True))


def test_a_killed_process_resumes_from_its_last_epoch_state(tmp_path):
    """SIGKILL from inside epoch 3's progress report: the state of epoch 3 survives, the rest is replayed."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import numpy as np
        from test_loop import _feature_world, _heads_model
        from semcontrib.training import StateFile, TrainConfig, fit_heads
        feats, data = _feature_world()
        cfg = TrainConfig(epochs=8, patience=100, batch_size=8, lr=0.05, device="cpu")
        def progress(stage, done, total):
            if stage == "epochs" and done == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        fit_heads(_heads_model(), feats, data, cfg, progress,
                  StateFile({str(tmp_path / 'k.pt')!r}, {{"run": "a"}}, resume=True))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                          cwd=str(Path(__file__).parents[2]))
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    from semcontrib.training import StateFile

    feats, data = _feature_world()
    cfg = TrainConfig(epochs=8, patience=100, batch_size=8, lr=0.05, device="cpu")
    resumed = _heads_model()
    h = fit_heads(resumed, feats, data, cfg, None,  # type: ignore[arg-type]
                  StateFile(tmp_path / "k.pt", {"run": "a"}, resume=True))
    whole = _heads_model()
    h_whole = fit_heads(whole, feats, data, cfg)  # type: ignore[arg-type]
    assert h.resumed_at == 3 and h.train_loss == h_whole.train_loss
    assert torch.equal(resumed.heads.layers["t"].weight, whole.heads.layers["t"].weight)


def _image_world(n: int = 12):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(n)]
    targets = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)], 1).astype(np.int64)
    return images, TrainingData(targets, ["task_a", "task_b"], np.arange(9), np.arange(9, n))


def test_fine_tune_resume_and_workers_give_the_uninterrupted_result(tmp_path):
    """The shared epoch loop, fine-tuning a tiny model: 2 DataLoader workers and a resume change nothing."""
    from semcontrib.training import StateFile, fine_tune
    from tests.conftest import tiny_model

    images, data = _image_world()
    cfg = TrainConfig(epochs=4, patience=100, batch_size=4, lr=0.01, backbone_lr=0.01, device="cpu",
                      augment=AugmentConfig(hue=0.0))
    whole = tiny_model()
    h_whole = fine_tune(whole, images, data, cfg)
    state = StateFile(tmp_path / "ft.pt", {"run": "ft"}, resume=True)
    with pytest.raises(_Stop):
        fine_tune(tiny_model(), images, data, cfg, _stop_at(2), state)
    resumed = tiny_model()
    h = fine_tune(resumed, images, data, TrainConfig(**{**cfg.to_dict(), "augment": cfg.augment, "workers": 2}),
                  None, state)
    assert h.resumed_at == 2 and h.train_loss == h_whole.train_loss
    for name, p in whole.state_dict().items():
        assert torch.equal(p, resumed.state_dict()[name]), name
    assert not any(p.requires_grad for p in resumed.parameters())


def test_device_choices_are_checked():
    from semcontrib.training import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="workers"):
        TrainConfig(workers=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_python_and_cli_defaults_agree():
    import argparse

    from semcontrib.training import ConceptLoss, ModelSetup
    from semcontrib.training.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "i", "l.csv", "--out", "m"])
    cfg, setup, closs = TrainConfig(), ModelSetup(), ConceptLoss()
    assert args.freeze_backbone is setup.freeze_backbone is True
    assert (args.device, args.workers, args.amp, args.epochs, args.batch_size, args.lr, args.backbone_lr,
            args.patience, args.views, args.seed) == (cfg.device, cfg.workers, cfg.amp, cfg.epochs, cfg.batch_size,
                                                      cfg.lr, cfg.backbone_lr, cfg.patience, cfg.n_views, cfg.seed)
    assert (args.backbone, args.architecture) == (setup.backbone, setup.architecture)
    assert (args.concept_weight, args.concept_target, args.concept_min_area) == (closs.weight, closs.target,
                                                                                 closs.min_area)
    assert not parser.parse_args(["train", "i", "l.csv", "--out", "m", "--fine-tune"]).freeze_backbone


def test_every_train_option_has_help_showing_its_default():
    import argparse

    from semcontrib.training.cli import register

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register(sub)
    for name in ("train", "evaluate"):
        p = sub.choices[name]
        text = p.format_help()
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
        assert "(default: efficientnet_lite0)" in text or name == "evaluate"
        assert "(default: auto)" in text and "(default: 32)" in text
