"""The whole run: read labels, split, train (frozen or fine-tuned, linear or SIAM heads), evaluate, save.

Data flows one way::

    labels CSV + image folder ──read_labels──> LabelledSet
        └──split_examples──> Split (train / val / test indices)
        [SIAM] └──concept_areas──> ConceptAreas (float32 N x K, from a region source)
        frozen:    └──extract_features──> cached backbone output ──fit_heads──> trained heads
        fine-tune: └──load_working_images──> images ──fine_tune──> trained backbone and heads
    ──predict_paths_timed (test split)──> evaluate_logits ──> EvaluationReport
    ──save_checkpoint──> MODEL.safetensors + MODEL.json

The defaults are the same from Python and from ``semcontrib train``: a frozen backbone
(:class:`ModelSetup`), ``device="auto"`` (:class:`~semcontrib.training.loop.TrainConfig`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.model import (
    ARCHITECTURES,
    MultitaskModel,
    SiamModel,
    build_multitask,
    build_siam,
    freeze,
    load_model,
)
from semcontrib.training.concepts import ConceptAreas, concept_areas
from semcontrib.training.features import FeatureJob, Progress, extract_features
from semcontrib.training.labels import LabelledSet, class_counts, data_hash, drop_unreadable, read_labels
from semcontrib.training.loop import (
    ConceptLoss,
    History,
    StateFile,
    TrainConfig,
    TrainingData,
    fine_tune,
    fit_heads,
    load_working_images,
    resolve_device,
)
from semcontrib.training.predict import predict_concept_presence, predict_features, predict_paths_timed
from semcontrib.training.split import Split, split_examples

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSetup:
    """Which model to train.

    Attributes
    ----------
    backbone : a ``semcontrib.backbones.BACKBONES`` key.
    weights : local ImageNet weights file; ``None``: the packaged weights (EfficientNet-Lite0/1/2).
    random_init : start from random weights instead (only when asked).
    freeze_backbone : ``True`` (default): train only the heads, on cached features of
        ``TrainConfig.n_views`` augmented views. ``False``: fine-tune backbone and heads end to end.
    architecture : ``linear`` (one linear layer per head on the pooled features) or ``siam``
        (concept bottleneck, :class:`semcontrib.model.SiamHeads`).
    concepts : the region source spec whose vocabulary the SIAM concepts are (``landscape``,
        ``grid``, ``annotations:PATH``, ...); required for ``siam``.
    concept_options : options of that region source.
    concept_loss : weight and form of the concept loss.
    plain_baseline : with ``siam``, also train a linear model on the same split, to report the
        task-accuracy cost of the bottleneck (SIAM table 2).
    """

    backbone: str = "efficientnet_lite0"
    weights: str | Path | None = None
    random_init: bool = False
    freeze_backbone: bool = True
    architecture: str = "linear"
    concepts: str | None = None
    concept_options: Mapping[str, Any] = field(default_factory=dict)
    concept_loss: ConceptLoss = field(default_factory=ConceptLoss)
    plain_baseline: bool = True

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.architecture == "siam" and not self.concepts:
            raise ValueError("architecture 'siam' needs concepts: a region source such as 'landscape', "
                             "'grid' or 'annotations:PATH'")
        if self.architecture != "siam" and self.concepts:
            raise ValueError("concepts are only used by architecture 'siam'")


@dataclass(frozen=True)
class RunOptions:
    """Where a run reads and writes, besides the checkpoint.

    Attributes
    ----------
    tasks : the task columns to use (default every column but the id).
    group_column : see :func:`~semcontrib.training.labels.read_labels`.
    cache_dir : where backbone features (frozen backbone) and concept areas (SIAM) are cached
        between runs.
    report_dir : where the evaluation report goes (JSON, Markdown, HTML, plots); ``None``: none.
    resume : continue from ``OUT.train_state.pt`` (written after every epoch) when it exists.
    classes : task -> allowed class names in logit order (e.g. from a Label Studio labelling config,
        :func:`semcontrib.label_studio.read_label_config`); ``None``: the labels found, sorted.
    """

    tasks: Sequence[str] | None = None
    group_column: str | None = None
    classes: Mapping[str, Sequence[str]] | None = None
    cache_dir: str | Path | None = None
    report_dir: str | Path | None = None
    resume: bool = False


@dataclass(frozen=True)
class TrainOutcome:
    """The result of :func:`train`.

    Attributes
    ----------
    model : the trained model (eval mode, gradients off, on the CPU).
    checkpoint : the sidecar path (``MODEL.json``; weights in ``MODEL.safetensors``).
    labelled : the examples used (unreadable images removed).
    split : indices into ``labelled``.
    history : losses per epoch.
    evaluation : the report on the held-out test split (``evaluation.EvaluationReport``).
    seconds : wall time of feature extraction plus training.
    feature_seconds : of which feature extraction (or image loading when fine-tuning).
    """

    model: MultitaskModel
    checkpoint: Path
    labelled: LabelledSet
    split: Split
    history: History
    evaluation: Any
    seconds: float
    feature_seconds: float


def state_path(out: str | Path) -> Path:
    """The per-epoch state file of a run writing checkpoint ``out``: ``OUT.train_state.pt``."""
    out = Path(out)
    return out.with_name(out.name + ".train_state.pt")


def _build(setup: ModelSetup, labelled: LabelledSet, vocabulary: Sequence[str] | None) -> MultitaskModel:
    weights = Path(setup.weights) if setup.weights else None
    if setup.architecture == "siam":
        assert vocabulary is not None
        return build_siam(setup.backbone, labelled.head_specs(), vocabulary, weights, setup.random_init)
    return build_multitask(setup.backbone, labelled.head_specs(), pretrained_weights=weights,
                           random_init=setup.random_init)


def train(images: str | Path, labels_csv: str | Path, out: str | Path, setup: ModelSetup | None = None,
          config: TrainConfig | None = None, options: RunOptions | None = None, *,
          progress: Progress | None = None) -> TrainOutcome:
    """Read labels, split, train, evaluate on the held-out split and save the checkpoint.

    Parameters
    ----------
    images, labels_csv : see :func:`~semcontrib.training.labels.read_labels`.
    out : checkpoint path without suffix; writes ``OUT.safetensors`` and the sidecar ``OUT.json``
        (``OUT.train_state.pt`` while training; removed at the end).
    setup : which model (default: frozen EfficientNet-Lite0 with linear heads).
    config : training settings (default :class:`TrainConfig`).
    options : tasks, group column, feature cache, report folder, resume.

    Returns
    -------
    TrainOutcome
    """
    from semcontrib.model import save_checkpoint
    from semcontrib.training import evaluation

    run = _TrainRun(setup or ModelSetup(), config or TrainConfig(), options or RunOptions(), progress)
    labelled = read_labels(labels_csv, images, tasks=run.opts.tasks, group_column=run.opts.group_column,
                           classes=run.opts.classes)
    areas: ConceptAreas | None = None
    if run.setup.architecture == "siam":
        assert run.setup.concepts is not None
        areas = concept_areas(labelled.paths, labelled.image_ids, run.setup.concepts, run.setup.concept_options,
                              progress, run.opts.cache_dir)
    model = _build(run.setup, labelled, areas.vocabulary if areas else None)
    model.eval().to(resolve_device(run.cfg.device))
    t0 = time.perf_counter()
    trained = _training_inputs(run, model, labelled, areas)
    t_feat = time.perf_counter() - t0
    fingerprint = {"config": run.cfg.fingerprint(), "data_sha256": trained.data_sha256,
                   "setup": _setup_dict(run.setup)}
    state = StateFile(state_path(out), fingerprint, run.opts.resume)
    if trained.features is not None:
        history = fit_heads(model, trained.features, trained.data, run.cfg, progress, state)
    else:
        history = fine_tune(model, trained.images, trained.data, run.cfg, progress, state)
    seconds = time.perf_counter() - t0
    report = _evaluate_trained(model, run, trained, out)
    freeze(model.cpu())
    extra = _checkpoint_extra(run, trained, history, report.summary(), model)
    extra["training"].update({"labels_csv": Path(labels_csv).name, "seconds": round(seconds, 3)})
    checkpoint = save_checkpoint(model, out, extra=extra)
    state.path.unlink(missing_ok=True)
    if run.opts.report_dir is not None:
        evaluation.write_report(report, run.opts.report_dir, history=history.to_dict())
    return TrainOutcome(model, checkpoint, trained.labelled, trained.split, history, report, seconds, t_feat)


@dataclass(frozen=True)
class _TrainRun:
    """What one :func:`train` call was asked for."""

    setup: ModelSetup
    cfg: TrainConfig
    opts: RunOptions
    progress: Progress | None


@dataclass(frozen=True)
class _Trained:
    """What the model trains on: the readable examples, their split and data, and the cached features
    (frozen backbone, float32 N x (1 + V) x F...) or the working images (fine-tuning)."""

    labelled: LabelledSet
    split: Split
    data: TrainingData
    features: np.ndarray | None
    images: list[np.ndarray]
    areas: ConceptAreas | None
    data_sha256: str

    @property
    def test_paths(self) -> list[Path]:
        return [self.labelled.paths[i] for i in self.split.test]


def _training_inputs(run: _TrainRun, model: MultitaskModel, labelled: LabelledSet,
                     areas: ConceptAreas | None) -> _Trained:
    """Cached features (frozen) or working images (fine-tuning), the unreadable images dropped; the split."""
    from semcontrib.imageio import sha256_file

    cfg = run.cfg
    feats: np.ndarray | None = None
    imgs: list[np.ndarray] = []
    if run.setup.freeze_backbone:
        job = FeatureJob(n_views=cfg.n_views, seed=cfg.seed, augment=cfg.augment, batch_size=cfg.batch_size,
                         cache_dir=run.opts.cache_dir, workers=cfg.workers)
        fs = extract_features(model, labelled.paths, job, run.progress)
        labelled, keep = drop_unreadable(labelled, fs.reasons)
        feats = fs.features[keep]
        file_hashes = [fs.file_hashes[i] for i in keep]
    else:
        work, reasons = load_working_images(labelled.paths, int(round(model.input_size * 1.25)))
        labelled, keep = drop_unreadable(labelled, reasons)
        imgs = [im for im in (work[i] for i in keep) if im is not None]
        file_hashes = [sha256_file(p) for p in labelled.paths]
    split = split_examples(labelled, cfg.seed, cfg.test_fraction, cfg.val_fraction)
    data = TrainingData(labelled.targets, labelled.tasks, split.train, split.val,
                        areas.areas[keep] if areas is not None else None, run.setup.concept_loss)
    return _Trained(labelled, split, data, feats, imgs, areas, data_hash(labelled, file_hashes))


def _evaluate_trained(model: MultitaskModel, run: _TrainRun, trained: _Trained, out: str | Path) -> Any:
    """The evaluation report on the held-out test split (with the SIAM results for a SIAM model)."""
    from semcontrib.training import evaluation

    labelled, split, setup = trained.labelled, trained.split, run.setup
    pred = predict_paths_timed(model, trained.test_paths, run.cfg.batch_size)
    meta: dict[str, Any] = {
        "model": str(out), "backbone": setup.backbone, "architecture": setup.architecture,
        "subset": "test", "evaluated": "at training", "freeze_backbone": setup.freeze_backbone,
        "split": split.to_dict(), "device": pred.device, "ms_per_image": _round(pred.ms_per_image),
        "batch_size": run.cfg.batch_size,
    }
    report = evaluation.evaluate_logits(
        pred.logits, labelled.targets[split.test], labelled.tasks, labelled.classes,
        image_ids=[labelled.image_ids[i] for i in split.test], baseline_counts=class_counts(labelled, split.train),
        label_report=labelled.report.to_dict(), meta=meta,
    )
    if isinstance(model, SiamModel) and trained.areas is not None:
        report = _add_siam_results(report, model, run, trained)
    return report


def _checkpoint_extra(run: _TrainRun, trained: _Trained, history: History, metrics: Any,
                      model: MultitaskModel) -> dict[str, Any]:
    """The checkpoint sidecar's label mapping, training record and metrics (``labels_csv`` and ``seconds``
    are added by :func:`train`)."""
    labelled, setup, areas = trained.labelled, run.setup, trained.areas
    extra: dict[str, Any] = {
        "label_mapping": labelled.label_mapping(),
        "tasks": list(labelled.tasks),
        "training": {
            "data_sha256": trained.data_sha256,
            "labels_csv": None,
            "n_examples": len(labelled),
            "freeze_backbone": setup.freeze_backbone,
            "architecture": setup.architecture,
            "group_column": run.opts.group_column,
            "pretrained": model.identity.get("pretrained", {}).get("source", "random-init"),
            "setup": _setup_dict(setup),
            "config": run.cfg.to_dict(),
            "split": trained.split.to_dict(labelled.image_ids),
            "class_counts_train": class_counts(labelled, trained.split.train),
            "history": history.to_dict(),
            "label_report": labelled.report.to_dict(),
            "seconds": None,
        },
        "metrics": metrics,
    }
    if areas is not None:
        extra["concept_source"] = {"source": areas.source, "options": dict(setup.concept_options),
                                   "vocabulary": list(areas.vocabulary), "failed_images": len(areas.reasons)}
    return extra


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)


def _setup_dict(setup: ModelSetup) -> dict[str, Any]:
    d = asdict(setup)
    d["weights"] = Path(setup.weights).name if setup.weights else None
    d["concept_options"] = {str(k): str(v) for k, v in setup.concept_options.items()}
    return d


def _add_siam_results(report: Any, model: SiamModel, run: _TrainRun, trained: _Trained) -> Any:
    """Concept average precision on the test split and, optionally, the plain model's accuracy."""
    from semcontrib.training import evaluation

    labelled, split, data, setup, cfg = trained.labelled, trained.split, trained.data, run.setup, run.cfg
    assert trained.areas is not None and data.concept_areas is not None
    presence = predict_concept_presence(model, trained.test_paths, cfg.batch_size)
    concepts = evaluation.concept_metrics(presence, data.concept_areas[split.test], trained.areas.vocabulary,
                                          setup.concept_loss.min_area)
    concepts["source"] = trained.areas.source
    plain: dict[str, Any] = {}
    if setup.plain_baseline:
        plain_model = build_multitask(setup.backbone, labelled.head_specs(),
                                      pretrained_weights=Path(setup.weights) if setup.weights else None,
                                      random_init=setup.random_init)
        plain_model.eval().to(resolve_device(cfg.device))
        plain_data = replace(data, concept_areas=None, concept_loss=None)
        if trained.features is not None:
            pooled = trained.features.mean(axis=(-2, -1))  # the backbone's average pooling of the cached map
            fit_heads(plain_model, pooled, plain_data, cfg)
            logits = predict_features(plain_model, pooled[split.test, 0])
        else:
            fine_tune(plain_model, trained.images, plain_data, cfg)
            logits = predict_paths_timed(plain_model, trained.test_paths, cfg.batch_size).logits
        plain_report = evaluation.evaluate_logits(logits, labelled.targets[split.test], labelled.tasks,
                                                  labelled.classes)
        plain = evaluation.plain_comparison(report, plain_report)
    return replace(report, concepts=concepts, plain_model=plain)


def evaluate_model(model: str | Path | MultitaskModel, images: str | Path, labels_csv: str | Path, *,
                   subset: str = "auto", batch_size: int = 32, progress: Progress | None = None,
                   device: str = "auto") -> Any:
    """Evaluate a saved model on a labelled folder: an ``evaluation.EvaluationReport``.

    Parameters
    ----------
    model : a checkpoint path (or an already loaded model).
    subset : ``"all"`` (every labelled image), ``"test"`` (only the checkpoint's held-out test
        ids; an error if the checkpoint has none), or ``"auto"`` (``"test"`` when the labels hold
        every held-out id of the checkpoint, i.e. this is the training data, else ``"all"``).
    device : where the model runs (``auto``, ``cpu``, ``cuda``); ``meta["ms_per_image"]`` is the
        forward time per image there.

    The model's heads must be columns of the CSV; labels outside the model's classes are counted
    as ``unknown_class`` and ignored.
    """
    from semcontrib.training import evaluation

    if subset not in ("auto", "all", "test"):
        raise ValueError(f"subset must be 'auto', 'all' or 'test', got {subset!r}")
    m, meta = _load_evaluated(model)
    labelled = read_labels(labels_csv, images, tasks=m.head_names,
                           classes={h.name: h.classes for h in m.head_specs})
    training = meta.get("training", {})
    labelled, chosen = _choose_subset(labelled, subset, training.get("split", {}).get("test_ids"))
    was = next(m.parameters()).device
    m.to(resolve_device(device))
    try:
        pred = predict_paths_timed(m, labelled.paths, batch_size, progress)
    finally:
        m.to(was)
    labelled, keep = drop_unreadable(labelled, pred.reasons)
    logits = {k: v[keep] for k, v in pred.logits.items()}
    return evaluation.evaluate_logits(
        logits, labelled.targets, labelled.tasks, labelled.classes, image_ids=labelled.image_ids,
        baseline_counts=training.get("class_counts_train"), label_report=labelled.report.to_dict(),
        meta={"model": str(model) if not isinstance(model, MultitaskModel) else m.identity.get("name"),
              "backbone": m.spec.name, "architecture": "siam" if isinstance(m, SiamModel) else "linear",
              "subset": chosen, "labels_csv": str(labels_csv), "device": pred.device,
              "ms_per_image": _round(pred.ms_per_image), "batch_size": batch_size},
    )


def _load_evaluated(model: str | Path | MultitaskModel) -> tuple[MultitaskModel, dict[str, Any]]:
    """The model (loaded from its checkpoint unless given loaded) and its sidecar (``{}`` without one)."""
    if isinstance(model, MultitaskModel):
        return model, {}
    m = load_model(str(model))
    sidecar = Path(str(model))
    sidecar = sidecar.with_suffix(".json") if sidecar.suffix != ".json" else sidecar
    return m, (json.loads(sidecar.read_text()) if sidecar.is_file() else {})


def _choose_subset(labelled: LabelledSet, subset: str, test_ids: Sequence[str] | None) -> tuple[LabelledSet, str]:
    """The examples to evaluate and which subset they are (``auto`` resolved to ``test`` or ``all``)."""
    chosen = subset
    if subset in ("auto", "test"):
        present = set(labelled.image_ids)
        if test_ids and set(test_ids) <= present:
            chosen = "test"
        elif subset == "test":
            raise ValueError("subset='test' needs a checkpoint whose held-out ids are all in the labels CSV")
        else:
            chosen = "all"
    if chosen == "test":
        wanted = set(test_ids or [])
        labelled = labelled.subset(np.asarray([i for i, r in enumerate(labelled.image_ids) if r in wanted]))
    return labelled, chosen
