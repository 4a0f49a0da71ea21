"""End to end on the bundled photographs: train (frozen backbone), checkpoint, evaluate, analyze."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semcontrib.model import load_checkpoint
from semcontrib.training import evaluate_model, extract_features, predict_features, predict_paths
from semcontrib.training.evaluation import load_report


def test_training_beats_the_majority_baseline(trained):
    ev = trained.evaluation
    assert ev.meta["subset"] == "test"
    assert ev.n_examples == len(trained.split.test) == 6
    baseline = np.mean([m.majority_accuracy for m in ev.tasks.values()])
    # figures for the report: mean accuracy vs the mean majority baseline on the held-out split
    print(f"\nheld-out: mean accuracy {ev.mean_accuracy:.3f}, mean F1 {ev.mean_f1:.3f}, "
          f"majority {baseline:.3f}; features {trained.feature_seconds:.1f} s, "
          f"heads {trained.history.seconds:.2f} s, {len(trained.history.train_loss)} epochs")
    assert ev.mean_accuracy > baseline + 0.2
    for m in ev.tasks.values():
        assert m.accuracy >= m.majority_accuracy
    assert trained.history.seconds < 20  # training the heads takes seconds on 2 cores


def test_split_is_seeded_stratified_and_disjoint(trained):
    s = trained.split
    assert s.method == "stratified:joint"
    assert len(s.train) + len(s.val) + len(s.test) == len(trained.labelled) == 64
    assert not set(s.train) & set(s.test) and not set(s.val) & set(s.test) and not set(s.train) & set(s.val)
    assert len(s.test) == 6 and len(s.val) == 6


def test_early_stopping_restores_the_best_epoch(trained):
    h = trained.history
    best = h.val_loss[h.best_epoch]
    assert min(h.val_loss[:h.best_epoch + 1]) == best
    assert all(v > best - 1e-4 for v in h.val_loss[h.best_epoch + 1:])  # min_delta
    if h.stopped_early:
        assert len(h.val_loss) == h.best_epoch + 1 + 10  # patience


def test_checkpoint_sidecar_records_labels_split_and_data_hash(trained):
    meta = json.loads(trained.checkpoint.read_text())
    assert meta["backbone"] == "efficientnet_lite0"
    assert [h["name"] for h in meta["heads"]] == ["nature", "biotic", "landscape"]
    assert meta["label_mapping"]["nature"] == {"nature": 0, "non-nature": 1}
    assert meta["heads"][2]["classes"] == ["artificial_surfaces", "forests_seminatural", "other"]
    assert len(meta["training"]["data_sha256"]) == 64
    assert sorted(meta["training"]["split"]["test_ids"]) == sorted(
        trained.labelled.image_ids[i] for i in trained.split.test)
    assert meta["preprocessing"]["resize"] == "squash"
    assert trained.checkpoint.with_suffix(".safetensors").is_file()
    assert meta["metrics"]["mean_accuracy"] == pytest.approx(trained.evaluation.mean_accuracy)


def test_reloaded_checkpoint_gives_exactly_the_same_predictions(trained, sample_data):
    paths = [trained.labelled.paths[i] for i in trained.split.test]
    before, _ = predict_paths(trained.model, paths)
    reloaded = load_checkpoint(trained.checkpoint)
    after, reasons = predict_paths(reloaded, paths)
    assert not reasons
    for head in before:
        np.testing.assert_array_equal(before[head], after[head])
    # the full model agrees with the heads on the cached un-augmented features used at training
    fs = extract_features(trained.model, paths, n_views=1, cache_dir=sample_data.cache)
    cached = predict_features(trained.model, fs.features[:, 0])
    for head in before:
        np.testing.assert_allclose(cached[head], before[head], atol=1e-3)


def test_evaluate_saved_model_uses_the_held_out_split(trained, sample_data, tmp_path):
    report = evaluate_model(trained.checkpoint, sample_data.images, sample_data.labels)
    assert report.meta["subset"] == "test"
    assert report.n_examples == 6
    for t, m in report.tasks.items():
        assert m.accuracy == pytest.approx(trained.evaluation.tasks[t].accuracy)
        assert m.majority_accuracy == pytest.approx(trained.evaluation.tasks[t].majority_accuracy)
    # labels without the held-out images (new data): every labelled image is evaluated
    df = pd.read_csv(sample_data.labels)
    test_ids = {trained.labelled.image_ids[i] for i in trained.split.test}
    other = df[~df["image_id"].isin(test_ids)].head(6)
    other.to_csv(tmp_path / "new.csv", index=False)
    report = evaluate_model(trained.checkpoint, sample_data.images, tmp_path / "new.csv")
    assert report.meta["subset"] == "all" and report.n_examples == 6
    with pytest.raises(ValueError, match="held-out"):
        evaluate_model(trained.checkpoint, sample_data.images, tmp_path / "new.csv", subset="test")


def test_training_report_files(trained):
    folder = trained.checkpoint.parent / "report"
    for name in ("report.json", "report.md", "report.html", "metrics.png", "history.png"):
        assert (folder / name).is_file(), name
    assert len(list(folder.glob("confusion_*.png"))) == 3
    again = load_report(folder)
    assert again.mean_f1 == pytest.approx(trained.evaluation.mean_f1)
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html


def test_analyze_explains_the_trained_heads(trained, tmp_path):
    pipeline = pytest.importorskip("semcontrib.pipeline", reason="semcontrib.pipeline (issue 2) not built yet")
    from semcontrib.corpus import Corpus

    paths = [trained.labelled.paths[i] for i in trained.split.test[:2]]
    run = pipeline.analyze(paths, tmp_path / "corpus", model=str(trained.checkpoint), methods=["gradcam"],
                           regions="grid", batch_size=2)
    assert run.n_ok == 2
    corpus = Corpus.open(tmp_path / "corpus")
    assert sorted(corpus.heads) == ["biotic", "landscape", "nature"]
    assert corpus.classes("landscape") == ["artificial_surfaces", "forests_seminatural", "other"]
    df = corpus.contributions
    assert set(df["head"]) == {"nature", "biotic", "landscape"}
    assert np.isfinite(df["sum"].to_numpy()).all()
    images = corpus.images
    # the corpus records the trained heads' predictions, equal to the model's own
    logits, _ = predict_paths(trained.model, paths)
    col = [c for c in images.columns if "nature" in c and "pred" in c]
    if col:
        pred = [trained.model.head("nature").classes[i] for i in logits["nature"].argmax(1)]
        by_path = dict(zip(images["path"].map(lambda p: Path(p).name), images[col[0]]))
        assert [by_path[p.name] for p in paths] == pred


def test_label_csv_from_data_folder_names_existing_photos():
    from semcontrib.paths import data_path

    labels = pd.read_csv(data_path("train_labels.csv"))
    photos = pd.read_csv(data_path("train_photos.csv"))
    assert list(labels["image_id"]) == list(photos["image_id"])
    assert list(labels.columns) == ["image_id", "nature", "biotic", "landscape"]


def test_fine_tuning_trains_the_backbone_too(sample_data, tmp_path):
    from semcontrib.model import build_multitask
    from semcontrib.training import ModelSetup, TrainConfig, train

    df = pd.read_csv(sample_data.labels)
    keep = df["image_id"].str.rsplit("_v", n=1).str[0].isin(["chelsea", "coffee", "gravel", "brick"])
    df[keep].to_csv(tmp_path / "small.csv", index=False)
    out = train(sample_data.images, tmp_path / "small.csv", tmp_path / "ft", ModelSetup(freeze_backbone=False),
                TrainConfig(epochs=2, batch_size=8))
    assert len(out.history.train_loss) == 2
    pretrained = build_multitask("efficientnet_lite0", out.labelled.head_specs())
    before = pretrained.backbone.state_dict()
    changed = [name for name, p in out.model.backbone.state_dict().items()
               if p.dtype.is_floating_point and not np.array_equal(p.numpy(), before[name].numpy())]
    assert changed, "fine-tuning left the backbone unchanged"
    # BatchNorm statistics stay those of ImageNet (BatchNorm runs in eval mode while fine-tuning)
    assert not any("running_mean" in name for name in changed)
    meta = json.loads(out.checkpoint.read_text())
    assert meta["training"]["freeze_backbone"] is False
    paths = out.labelled.paths[:3]
    a, _ = predict_paths(out.model, paths)
    b, _ = predict_paths(load_checkpoint(out.checkpoint), paths)
    for head in a:
        np.testing.assert_array_equal(a[head], b[head])
