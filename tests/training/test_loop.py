"""Labels, bad labels, split, loss, augmentation, early stopping: small worlds, no real model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semcontrib.training import (
    AugmentConfig,
    LabelledSet,
    LabelReport,
    TrainConfig,
    TrainingData,
    augment_rgb,
    fit_heads,
    read_labels,
    split_examples,
    task_balanced_loss,
)


def _write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / n)


def _labelled(targets: list[list[int]], classes: dict[str, tuple[str, ...]]) -> LabelledSet:
    n = len(targets)
    report = LabelReport(n, n, {})
    return LabelledSet([f"i{k}" for k in range(n)], [Path(f"i{k}.jpg") for k in range(n)], list(classes),
                       classes, np.asarray(targets, dtype=np.int64), report)


# --------------------------------------------------------------------------- labels


def test_ids_match_with_or_without_extension_and_subfolders(tmp_path):
    _write_images(tmp_path / "img", ["a.jpg", "b.png", "c.jpeg"])
    _write_images(tmp_path / "img" / "sub", ["d.jpg"])
    (tmp_path / "l.csv").write_text("image_id,nature\na.jpg,yes\nb,no\nsub/d,yes\nc.jpeg,no\n")
    ls = read_labels(tmp_path / "l.csv", tmp_path / "img")
    assert [p.name for p in ls.paths] == ["a.jpg", "b.png", "d.jpg", "c.jpeg"]
    assert ls.classes == {"nature": ("no", "yes")}
    assert ls.targets[:, 0].tolist() == [1, 0, 1, 0]
    assert ls.report.n_problems == 0


def test_path_column(tmp_path):
    _write_images(tmp_path / "img", ["a.jpg", "b.jpg"])
    (tmp_path / "l.csv").write_text(f"path,t\na.jpg,x\n{tmp_path / 'img' / 'b.jpg'},y\nnope.jpg,x\n")
    ls = read_labels(tmp_path / "l.csv", tmp_path / "img")
    assert len(ls) == 2
    assert ls.report.counts["missing_image"] == 1


def test_bad_labels_give_a_report_of_counts_not_a_crash(tmp_path):
    img = tmp_path / "img"
    _write_images(img, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "amb.jpg", "amb.png",
                        "extra.jpg"])
    (img / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "l.csv").write_text(
        "image_id,nature,landscape\n"
        "a,nature,forest\n"
        "b,non-nature,urban\n"
        "c,nature,\n"            # empty cell
        "d,non-nature,urban\n"
        "e,nature,water\n"       # water: single-example class
        "f,,\n"                  # no label at all
        "ghost,nature,urban\n"   # unknown id
        "amb,nature,urban\n"     # ambiguous id
        "a,nature,forest\n"      # duplicate
        ",nature,urban\n"        # empty id
        "broken,nature,forest\n"
    )
    ls = read_labels(tmp_path / "l.csv", img)
    c = ls.report.counts
    assert c["empty_cell"] == 3  # c's landscape, f's two cells
    assert c["no_label"] == 1
    assert c["unknown_id"] == 1 and ls.report.examples["unknown_id"] == ["ghost"]
    assert c["ambiguous_id"] == 1
    assert c["duplicate_id"] == 1
    assert c["empty_id"] == 1
    assert c["unlabelled_image"] == 3  # extra.jpg and the two amb files
    assert ls.report.single_example_classes == {"landscape": ["water"]}
    assert ls.image_ids == ["a", "b", "c", "d", "e", "broken"]
    assert ls.targets[2].tolist() == [0, -1]
    # unknown classes: against a checkpoint's classes (evaluation)
    ls2 = read_labels(tmp_path / "l.csv", img, classes={"nature": ("nature", "non-nature"),
                                                        "landscape": ("forest", "urban")})
    assert ls2.report.counts["unknown_class"] == 1
    assert ls2.report.unknown_classes == {"landscape": {"water": 1}}
    # a task with a single class is dropped and reported, the others train
    (tmp_path / "one.csv").write_text("image_id,nature,constant\na,nature,x\nb,non-nature,x\n")
    ls3 = read_labels(tmp_path / "one.csv", img)
    assert ls3.tasks == ["nature"] and "constant" in ls3.report.dropped_tasks


def test_structural_csv_errors_are_specific(tmp_path):
    _write_images(tmp_path / "img", ["a.jpg"])
    (tmp_path / "noid.csv").write_text("name,t\na,x\n")
    with pytest.raises(ValueError, match="image_id"):
        read_labels(tmp_path / "noid.csv", tmp_path / "img")
    (tmp_path / "l.csv").write_text("image_id,t\na,x\n")
    with pytest.raises(ValueError, match="task columns"):
        read_labels(tmp_path / "l.csv", tmp_path / "img", tasks=["missing"])
    with pytest.raises(ValueError, match="two classes"):
        read_labels(tmp_path / "l.csv", tmp_path / "img")
    with pytest.raises(FileNotFoundError):
        read_labels(tmp_path / "absent.csv", tmp_path / "img")


def test_unreadable_images_are_skipped_and_counted_in_training(tmp_path, monkeypatch):
    import semcontrib.training as tr
    from semcontrib.model import HeadSpec, LinearHeads

    img = tmp_path / "img"
    names = [f"{k}.jpg" for k in range(12)]
    _write_images(img, names)
    (img / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    rows = [f"{k},{'yes' if k % 2 else 'no'}" for k in range(12)] + ["bad,yes"]
    (tmp_path / "l.csv").write_text("image_id,t\n" + "\n".join(rows) + "\n")

    def tiny_model(backbone, heads, pretrained_weights=None, random_init=False):
        return _TinyModel(LinearHeads(4, heads), [HeadSpec(h.name, h.classes) for h in heads])

    import semcontrib.model
    import semcontrib.training.run

    monkeypatch.setattr(semcontrib.training.run, "build_multitask", tiny_model)
    monkeypatch.setattr(semcontrib.model, "save_checkpoint", lambda model, out, extra=None: Path(str(out) + ".json"))
    out = tr.train(img, tmp_path / "l.csv", tmp_path / "m", config=TrainConfig(n_views=1, epochs=3))
    assert out.labelled.report.counts["unreadable_image"] == 1
    assert "bad" not in out.labelled.image_ids and len(out.labelled) == 12


class _Spec:
    name = "tiny"
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    feature_dim = 4
    input_size = 8


class _TinyModel(torch.nn.Module):
    """A 4-feature backbone (channel means and max) with real linear heads."""

    def __init__(self, heads, specs):
        super().__init__()
        self.spec = _Spec()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten(1))
        self.heads = heads
        self.head_specs = specs
        self.input_size = 8
        self.identity = {}

    def forward(self, x):
        return self.heads(self.backbone(x))


# --------------------------------------------------------------------------- split


def test_split_is_stratified_seeded_and_keeps_singletons_in_training():
    targets = [[0, 0]] * 30 + [[1, 1]] * 10 + [[0, 2]]  # class 2 of task b: a single example
    ls = _labelled(targets, {"a": ("x", "y"), "b": ("p", "q", "r")})
    s = split_examples(ls, seed=3)
    again = split_examples(ls, seed=3)
    other = split_examples(ls, seed=4)
    assert s.method == "stratified:joint"
    np.testing.assert_array_equal(s.test, again.test)
    assert not np.array_equal(s.test, other.test)
    assert len(s.test) == 4 and len(s.val) == 4
    assert 40 in s.train  # the single example
    t = ls.targets[s.test, 0]
    assert (t == 0).sum() == 3 and (t == 1).sum() == 1  # 3:1 as in the data
    assert len(set(s.train) | set(s.val) | set(s.test)) == 41


def test_split_falls_back_when_classes_are_too_small():
    rng = np.random.default_rng(0)
    # joint labels almost all unique -> stratify on one task
    targets = [[int(rng.integers(0, 2)), k] for k in range(20)]
    ls = _labelled(targets, {"a": ("x", "y"), "b": tuple(f"c{k}" for k in range(20))})
    s = split_examples(ls, seed=0)
    assert s.method == "stratified:a" and s.note
    # every task's classes unique -> random
    ls = _labelled([[k, k] for k in range(10)], {"a": tuple(map(str, range(10))), "b": tuple(map(str, range(10)))})
    s = split_examples(ls, seed=0)
    assert s.method == "random" and "random" in s.note
    assert len(s.test) == 1


def test_split_rejects_bad_fractions():
    ls = _labelled([[0], [1], [0], [1]], {"a": ("x", "y")})
    with pytest.raises(ValueError, match="test_fraction"):
        split_examples(ls, test_fraction=0.9)
    with pytest.raises(ValueError, match="at least 3"):
        split_examples(_labelled([[0], [1]], {"a": ("x", "y")}))


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


def test_group_column_keeps_each_group_on_one_side(tmp_path):
    img = tmp_path / "img"
    names = [f"g{g}_{k}.jpg" for g in range(12) for k in range(3)]
    _write_images(img, names)
    rows = [f"{n[:-4]},{'yes' if int(n[1:].split('_')[0]) % 2 else 'no'},scene{n[1:].split('_')[0]}"
            for n in names]
    (tmp_path / "l.csv").write_text("image_id,t,scene\n" + "\n".join(rows) + "\n")
    ls = read_labels(tmp_path / "l.csv", img, group_column="scene")
    assert ls.tasks == ["t"] and ls.groups is not None and len(set(ls.groups)) == 12
    s = split_examples(ls, seed=0)
    assert s.method.startswith("group+") and len(s.test) == 3 and len(s.val) == 3
    side = {}
    for name, idx in (("train", s.train), ("val", s.val), ("test", s.test)):
        for i in idx:
            assert side.setdefault(ls.groups[i], name) == name
    with pytest.raises(ValueError, match="group column"):
        read_labels(tmp_path / "l.csv", img, group_column="nope")
