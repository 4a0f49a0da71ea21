"""Evaluation of a multitask classifier: metrics per task, reports and a comparison table.

Pure functions on arrays (no torch): ``evaluate_logits`` turns head logits and true labels into an
:class:`EvaluationReport`; ``write_report`` writes it as ``report.json``, ``report.md`` and a
self-contained ``report.html`` with plots (PNG, matplotlib); ``compare_reports`` puts several
reports (for example one per backbone) into one table.

Metrics per task (examples without a label for the task are left out): accuracy, weighted F1
(per-class F1 weighted by the class's support), macro F1, the confusion matrix (rows: true class,
columns: predicted class, in the head's class order) and the accuracy of the majority-class
baseline (always predicting the class most frequent in the training split, or in the evaluated
labels when the training counts are unknown). ``mean_accuracy`` and ``mean_f1`` average the tasks
with equal weight.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.report import markdown_to_html

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_FORMAT = "semcontrib-evaluation/1"


@dataclass(frozen=True)
class TaskMetrics:
    """Metrics of one task (head).

    Attributes
    ----------
    classes : K class names, in logit order.
    n : number of evaluated examples with a label for this task.
    accuracy, f1_weighted, f1_macro : in [0, 1] (NaN when ``n`` is 0).
    confusion : int K x K, rows true class, columns predicted class.
    support : K true-label counts.
    majority_class, majority_accuracy : the baseline that always predicts ``majority_class``.
    """

    classes: list[str]
    n: int
    accuracy: float
    f1_weighted: float
    f1_macro: float
    confusion: list[list[int]]
    support: list[int]
    majority_class: str
    majority_accuracy: float


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics of every task, the means across tasks, and the context they were computed in.

    Attributes
    ----------
    tasks : task -> :class:`TaskMetrics`, in head order.
    mean_accuracy, mean_f1 : equal-weight means over tasks of accuracy and weighted F1.
    n_examples : evaluated images.
    label_report : ``training.LabelReport.to_dict()`` of the labels (counts of bad labels).
    meta : model, backbone, subset, split, device, ``ms_per_image`` (inference time), ...
    predictions : per image id, per task: (true class or None, predicted class).
    loss : the task-balanced cross-entropy of the logits (:func:`task_balanced_loss`).
    concepts : SIAM models: concept average precision (:func:`concept_metrics`); else empty.
    plain_model : SIAM models: the plain linear model's accuracy on the same split and the cost
        (:func:`plain_comparison`); else empty.
    """

    tasks: dict[str, TaskMetrics]
    mean_accuracy: float
    mean_f1: float
    n_examples: int
    label_report: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    loss: float = float("nan")
    concepts: dict[str, Any] = field(default_factory=dict)
    plain_model: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Small dict for a checkpoint sidecar: means and per-task accuracy / F1 / baseline."""
        return {
            "subset": self.meta.get("subset"),
            "n_examples": self.n_examples,
            "mean_accuracy": _r(self.mean_accuracy),
            "mean_f1": _r(self.mean_f1),
            "loss": _r(self.loss),
            "ms_per_image": self.meta.get("ms_per_image"),
            "tasks": {t: {"accuracy": _r(m.accuracy), "f1_weighted": _r(m.f1_weighted),
                          "majority_accuracy": _r(m.majority_accuracy), "n": m.n}
                      for t, m in self.tasks.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = REPORT_FORMAT
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationReport:
        if d.get("format") != REPORT_FORMAT:
            raise ValueError(f"not a semcontrib evaluation report (format {d.get('format')!r})")
        tasks = {t: TaskMetrics(**m) for t, m in d["tasks"].items()}
        loss = d.get("loss")
        return cls(tasks, _f(d["mean_accuracy"]), _f(d["mean_f1"]), int(d["n_examples"]),
                   dict(d.get("label_report", {})), dict(d.get("meta", {})), list(d.get("predictions", [])),
                   _f(loss), dict(d.get("concepts", {})), dict(d.get("plain_model", {})))


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _r(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def task_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str],
                 baseline_counts: Mapping[str, int] | None = None) -> TaskMetrics:
    """Metrics of one task.

    Parameters
    ----------
    y_true : int N, class indices, ``-1`` where unlabelled (left out).
    y_pred : int N, predicted class indices.
    classes : K class names.
    baseline_counts : class -> training count, to pick the majority class (default: ``y_true``).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-d of equal length, "
                         f"got {y_true.shape} and {y_pred.shape}")
    k = len(classes)
    if k < 1:
        raise ValueError("classes must not be empty")
    if y_true.size and int(y_true.max()) >= k:
        raise ValueError(f"y_true holds class index {int(y_true.max())} but there are only {k} classes")
    mask = y_true >= 0
    t, p = y_true[mask], y_pred[mask]
    labels = list(range(k))
    if baseline_counts:
        counts = np.asarray([int(baseline_counts.get(c, 0)) for c in classes])
    else:
        counts = np.bincount(t, minlength=k)
    majority = int(np.argmax(counts)) if counts.size else 0
    if t.size == 0:
        nan = float("nan")
        return TaskMetrics(list(classes), 0, nan, nan, nan, [[0] * k for _ in range(k)], [0] * k,
                           classes[majority], nan)
    cm = confusion_matrix(t, p, labels=labels)
    return TaskMetrics(
        classes=list(classes), n=int(t.size),
        accuracy=float(accuracy_score(t, p)),
        f1_weighted=float(f1_score(t, p, labels=labels, average="weighted", zero_division=0)),
        f1_macro=float(f1_score(t, p, labels=labels, average="macro", zero_division=0)),
        confusion=cm.astype(int).tolist(), support=np.bincount(t, minlength=k).astype(int).tolist(),
        majority_class=classes[majority], majority_accuracy=float(np.mean(t == majority)),
    )


def evaluate_logits(logits: Mapping[str, np.ndarray], targets: np.ndarray, tasks: Sequence[str],
                    classes: Mapping[str, Sequence[str]], *, image_ids: Sequence[str] | None = None,
                    baseline_counts: Mapping[str, Mapping[str, int]] | None = None,
                    label_report: Mapping[str, Any] | None = None,
                    meta: Mapping[str, Any] | None = None) -> EvaluationReport:
    """Evaluate head logits against true labels.

    Parameters
    ----------
    logits : task -> float N x K_t.
    targets : int N x T class indices in the order of ``tasks``, ``-1`` where unlabelled.
    tasks : T task (head) names.
    classes : task -> K_t class names.
    image_ids : N ids, to list predictions per image in the report.
    baseline_counts : task -> {class -> training count} for the majority baseline.
    """
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[1] != len(tasks):
        raise ValueError(f"targets must be N x {len(tasks)}, got {targets.shape}")
    n = targets.shape[0]
    per_task: dict[str, TaskMetrics] = {}
    preds: dict[str, np.ndarray] = {}
    for j, t in enumerate(tasks):
        if t not in logits:
            raise ValueError(f"no logits for task {t!r}; heads are {sorted(logits)}")
        z = np.asarray(logits[t])
        if z.shape != (n, len(classes[t])):
            raise ValueError(f"logits of {t!r} must be {n} x {len(classes[t])}, got {z.shape}")
        preds[t] = z.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        per_task[t] = task_metrics(targets[:, j], preds[t], classes[t],
                                   (baseline_counts or {}).get(t))
    loss = task_balanced_loss(logits, targets, tasks)
    accs = [m.accuracy for m in per_task.values() if m.n]
    f1s = [m.f1_weighted for m in per_task.values() if m.n]
    rows = []
    if image_ids is not None:
        for i, rid in enumerate(image_ids):
            row: dict[str, Any] = {"image_id": rid}
            for j, t in enumerate(tasks):
                y = int(targets[i, j])
                row[t] = {"true": classes[t][y] if y >= 0 else None, "pred": classes[t][int(preds[t][i])]}
            rows.append(row)
    return EvaluationReport(per_task, float(np.mean(accs)) if accs else float("nan"),
                            float(np.mean(f1s)) if f1s else float("nan"), n,
                            dict(label_report or {}), dict(meta or {}), rows, loss)


def task_balanced_loss(logits: Mapping[str, np.ndarray], targets: np.ndarray, tasks: Sequence[str]) -> float:
    """Mean over tasks of (cross-entropy over the labelled examples) / log(K_t), in float64.

    The same formula as the training loss (``semcontrib.training.loop.task_balanced_loss``, torch);
    tasks without a labelled example are left out; NaN when no task has one.
    """
    parts = []
    for j, t in enumerate(tasks):
        y = np.asarray(targets)[:, j]
        mask = y >= 0
        if not mask.any():
            continue
        z = np.asarray(logits[t], dtype=np.float64)[mask]
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        ce = -logp[np.arange(len(z)), y[mask]].mean()
        parts.append(ce / np.log(max(z.shape[1], 2)))
    return float(np.mean(parts)) if parts else float("nan")


def concept_metrics(presence: np.ndarray, areas: np.ndarray, vocabulary: Sequence[str],
                    min_area: float) -> dict[str, Any]:
    """Average precision of concept presence scores (SIAM table 2).

    Parameters
    ----------
    presence : float N x K predicted presence probabilities (NaN rows: unreadable images).
    areas : float N x K area fractions from the region source (NaN rows: unknown).
    vocabulary : K concept names.
    min_area : area from which a concept counts as present.

    Returns
    -------
    dict
        ``average_precision``: concept -> AP (``None`` where the concept is never present or
        always present among the evaluated images), ``mean_average_precision`` over the concepts
        with an AP, ``n``: images evaluated, ``prevalence``: concept -> fraction present.
    """
    from sklearn.metrics import average_precision_score

    presence = np.asarray(presence, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    if presence.shape != areas.shape or presence.ndim != 2 or presence.shape[1] != len(vocabulary):
        raise ValueError(f"presence and areas must both be N x {len(vocabulary)}, got {presence.shape} "
                         f"and {areas.shape}")
    ok = ~(np.isnan(presence).any(axis=1) | np.isnan(areas).any(axis=1))
    truth = areas[ok] >= min_area
    ap: dict[str, float | None] = {}
    for k, name in enumerate(vocabulary):
        col = truth[:, k]
        ap[name] = (round(float(average_precision_score(col, presence[ok, k])), 6)
                    if 0 < col.sum() < len(col) else None)
    valid = [v for v in ap.values() if v is not None]
    return {"average_precision": ap, "mean_average_precision": round(float(np.mean(valid)), 6) if valid else None,
            "n": int(ok.sum()), "min_area": min_area,
            "prevalence": {n: round(float(truth[:, k].mean()), 6) if len(truth) else None
                           for k, n in enumerate(vocabulary)}}


def plain_comparison(siam: EvaluationReport, plain: EvaluationReport) -> dict[str, Any]:
    """The task-accuracy cost of the concept bottleneck: plain-model accuracy minus SIAM accuracy, per task."""
    tasks = {t: {"plain_accuracy": _r(plain.tasks[t].accuracy), "siam_accuracy": _r(m.accuracy),
                 "cost": _r(plain.tasks[t].accuracy - m.accuracy)}
             for t, m in siam.tasks.items() if t in plain.tasks}
    return {"tasks": tasks, "plain_mean_accuracy": _r(plain.mean_accuracy), "siam_mean_accuracy":
            _r(siam.mean_accuracy), "mean_cost": _r(plain.mean_accuracy - siam.mean_accuracy),
            "plain_mean_f1": _r(plain.mean_f1), "plain_loss": _r(plain.loss)}


# --------------------------------------------------------------------------- writing


def _plot_confusion(m: TaskMetrics, task: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(m.confusion, dtype=float)
    k = len(m.classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * k, 1.0 + 0.65 * k), dpi=100)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), m.classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), m.classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"{task}: accuracy {m.accuracy:.2f}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _plot_metrics(report: EvaluationReport) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tasks = list(report.tasks)
    x = np.arange(len(tasks))
    w = 0.27
    fig, ax = plt.subplots(figsize=(3.0 + 1.2 * len(tasks), 3.2), dpi=100)
    ax.bar(x - w, [report.tasks[t].accuracy for t in tasks], w, label="accuracy")
    ax.bar(x, [report.tasks[t].f1_weighted for t in tasks], w, label="weighted F1")
    ax.bar(x + w, [report.tasks[t].majority_accuracy for t in tasks], w, label="majority baseline",
           color="grey")
    ax.set_xticks(x, tasks)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _plot_history(history: Mapping[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot(history["train_loss"], label="training loss")
    if any(np.isfinite(v) for v in history["val_loss"]):
        ax.plot(history["val_loss"], label="validation loss")
    ax.axvline(history["best_epoch"], color="grey", ls="--", lw=1, label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("task-balanced loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _bad_label_lines(label_report: Mapping[str, Any]) -> list[str]:
    counts = label_report.get("counts", {})
    lines = [f"| {k} | {v} | {', '.join(label_report.get('examples', {}).get(k, []))} |"
             for k, v in counts.items() if v]
    for t, cl in label_report.get("single_example_classes", {}).items():
        lines.append(f"| single_example_class ({t}) | {len(cl)} | {', '.join(cl)} |")
    for t, why in label_report.get("dropped_tasks", {}).items():
        lines.append(f"| dropped task {t} | 1 | {why} |")
    return lines


def report_markdown(report: EvaluationReport, images: Mapping[str, str] | None = None) -> str:
    """The report as Markdown; ``images`` maps plot names (``metrics``, ``history``, task) to file names."""
    images = images or {}
    meta = report.meta
    out = ["# Evaluation report", ""]
    for k in ("model", "backbone", "architecture", "subset", "labels_csv", "freeze_backbone", "device",
              "ms_per_image"):
        if k in meta:
            out.append(f"- **{k}**: {meta[k]}")
    if "split" in meta:
        s = meta["split"]
        out.append(f"- **split**: {s.get('method')} (seed {s.get('seed')}; train {s.get('n_train')}, "
                   f"validation {s.get('n_val')}, test {s.get('n_test')}) {s.get('note', '')}".rstrip())
    out += [f"- **images evaluated**: {report.n_examples}",
            f"- **mean accuracy**: {_fmt(report.mean_accuracy)}",
            f"- **mean weighted F1**: {_fmt(report.mean_f1)}",
            f"- **loss** (task-balanced cross-entropy): {_fmt(report.loss)}", ""]
    out += ["| task | n | accuracy | weighted F1 | macro F1 | majority baseline (class) |",
            "|---|---|---|---|---|---|"]
    for t, m in report.tasks.items():
        out.append(f"| {t} | {m.n} | {_fmt(m.accuracy)} | {_fmt(m.f1_weighted)} | {_fmt(m.f1_macro)} | "
                   f"{_fmt(m.majority_accuracy)} ({m.majority_class}) |")
    out.append("")
    if "metrics" in images:
        out += [f"![metrics]({images['metrics']})", ""]
    if "history" in images:
        out += ["## Training", "", f"![loss per epoch]({images['history']})", ""]
    out += _siam_lines(report)
    out += ["## Confusion matrices", "", "Rows: true class; columns: predicted class.", ""]
    for t, m in report.tasks.items():
        out += [f"### {t}", "", "| true \\ predicted | " + " | ".join(m.classes) + " |",
                "|---|" + "---|" * len(m.classes)]
        for c, row in zip(m.classes, m.confusion):
            out.append(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
        out.append("")
        if t in images:
            out += [f"![confusion {t}]({images[t]})", ""]
    bad = _bad_label_lines(report.label_report)
    out += ["## Labels", ""]
    lr = report.label_report
    if lr:
        out.append(f"{lr.get('n_rows', '?')} rows, {lr.get('n_examples', '?')} labelled images used.")
        out.append("")
    if bad:
        out += ["| problem | count | examples |", "|---|---|---|", *bad, ""]
    else:
        out += ["No bad labels.", ""]
    return "\n".join(out)


def _siam_lines(report: EvaluationReport) -> list[str]:
    out: list[str] = []
    c = report.concepts
    if c:
        out += ["## Concepts (SIAM)", "",
                f"Concept presence against the region source `{c.get('source')}` (present from area "
                f"{c.get('min_area')}), {c.get('n')} images; mean average precision "
                f"{_fmt(c.get('mean_average_precision'))}.", "",
                "| concept | average precision | prevalence |", "|---|---|---|"]
        for name, ap in c.get("average_precision", {}).items():
            out.append(f"| {name} | {_fmt(ap)} | {_fmt(c.get('prevalence', {}).get(name))} |")
        out.append("")
    p = report.plain_model
    if p:
        out += ["## Cost of the concept bottleneck", "",
                "Accuracy of a plain linear model trained on the same split, and the SIAM model's.", "",
                "| task | plain | SIAM | cost |", "|---|---|---|---|"]
        for t, m in p.get("tasks", {}).items():
            out.append(f"| {t} | {_fmt(m['plain_accuracy'])} | {_fmt(m['siam_accuracy'])} | {_fmt(m['cost'])} |")
        out += [f"| **mean** | {_fmt(p.get('plain_mean_accuracy'))} | {_fmt(p.get('siam_mean_accuracy'))} | "
                f"{_fmt(p.get('mean_cost'))} |", ""]
    return out

def write_report(report: EvaluationReport, out_dir: str | Path,
                 history: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` (with PNG plots beside it) and a self-contained ``report.html``.

    Returns
    -------
    name -> path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {"metrics": _plot_metrics(report)}
    names = {"metrics": "metrics.png"}
    if history is not None and history.get("train_loss"):
        pngs["history"] = _plot_history(history)
        names["history"] = "history.png"
    for i, (t, m) in enumerate(report.tasks.items()):
        pngs[t] = _plot_confusion(m, t)
        names[t] = f"confusion_{i}_{''.join(c if c.isalnum() else '_' for c in t)}.png"
    written: dict[str, Path] = {}
    for key, data in pngs.items():
        p = out / names[key]
        p.write_bytes(data)
        written[key] = p
    d = report.to_dict()
    if history is not None:
        d["history"] = dict(history)
    (out / REPORT_JSON).write_text(json.dumps(d, indent=1, default=_json_default, allow_nan=True))
    md = report_markdown(report, names)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(markdown_to_html(md, pngs, names))
    written.update({"json": out / REPORT_JSON, "markdown": out / "report.md", "html": out / "report.html"})
    return written


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def load_report(path: str | Path) -> EvaluationReport:
    """Read a report written by :func:`write_report` (its folder or its ``report.json``)."""
    p = Path(path)
    if p.is_dir():
        p = p / REPORT_JSON
    if not p.is_file():
        raise FileNotFoundError(f"evaluation report not found: {p}")
    return EvaluationReport.from_dict(json.loads(p.read_text()))


# --------------------------------------------------------------------------- comparison


def compare_reports(reports: Mapping[str, EvaluationReport]) -> Any:
    """One row per report: mean accuracy, mean F1, and accuracy / weighted F1 per task.

    Parameters
    ----------
    reports : label (e.g. the backbone or the report folder) -> report.

    Returns
    -------
    pandas.DataFrame
        Index: the labels; columns ``backbone``, ``architecture``, ``subset``, ``n``, ``test_loss``,
        ``mean_accuracy``, ``mean_f1`` (mean weighted F1), ``ms_per_image`` (inference, forward
        pass only, with ``device``), then ``<task> accuracy``, ``<task> F1`` and ``<task> baseline``
        (majority class) for every task of any report (NaN where a report lacks the task), and
        ``concept_mAP`` / ``accuracy_cost`` for SIAM reports.
    """
    import pandas as pd

    if not reports:
        raise ValueError("compare_reports needs at least one report")
    rows = {}
    for label, r in reports.items():
        ms = r.meta.get("ms_per_image")
        row: dict[str, Any] = {"backbone": r.meta.get("backbone"), "architecture": r.meta.get("architecture", "linear"),
                               "subset": r.meta.get("subset"), "n": r.n_examples, "test_loss": r.loss,
                               "mean_accuracy": r.mean_accuracy, "mean_f1": r.mean_f1,
                               "ms_per_image": float(ms) if ms is not None else float("nan"),
                               "device": r.meta.get("device")}
        for t, m in r.tasks.items():
            row[f"{t} accuracy"] = m.accuracy
            row[f"{t} F1"] = m.f1_weighted
            row[f"{t} baseline"] = m.majority_accuracy
        if r.concepts or r.plain_model:
            row["concept_mAP"] = _f(r.concepts.get("mean_average_precision"))
            row["accuracy_cost"] = _f(r.plain_model.get("mean_cost"))
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def write_comparison(reports: Mapping[str, EvaluationReport], out: str | Path) -> dict[str, Path]:
    """Write the comparison table as ``comparison.csv``, ``comparison.md`` and ``comparison.html``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = compare_reports(reports)
    df.to_csv(out / "comparison.csv", index_label="report")
    shown = df.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].map(_fmt)
    header = "| report | " + " | ".join(str(c) for c in shown.columns) + " |"
    lines = ["# Model comparison", "", header, "|---|" + "---|" * len(shown.columns)]
    for label, row in shown.iterrows():
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row.tolist()) + " |")
    md = "\n".join(lines) + "\n"
    (out / "comparison.md").write_text(md)
    (out / "comparison.html").write_text(markdown_to_html(md, {}, {}))
    return {"csv": out / "comparison.csv", "markdown": out / "comparison.md", "html": out / "comparison.html"}
