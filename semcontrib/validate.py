"""``semcontrib validate CORPUS [-o DIR]``: how far each method's region vectors can be trusted.

A report per head x method (``report.json``, ``report.md`` with PNG plots beside it, and a
self-contained ``report.html``):

* **faithfulness** (median, quartiles, count) and the share of images whose scores
  *anti*-correlate with deletion (faithfulness < 0); **deletion** and **insertion AUC** (median,
  quartiles). Read from the corpus's attributions table when it has the columns
  (``faithfulness``, ``deletion_auc``, ``insertion_auc``), otherwise computed here with
  :func:`semcontrib.validity.compute_validity` (needs the model and the image files);
* **agreement** between methods: per head and pair of methods, the median over images of the
  Spearman correlation between their region vectors (present regions only);
* **model randomisation** (Adebayo et al. 2018, "Sanity checks for saliency maps"; Quantus MPRT):
  on a sample of images, the heads' weights and then the backbone's top stages are re-initialised
  cumulatively (``reset_parameters``, seeded), the methods recomputed, and the median Spearman
  correlation of the region vectors to the original ones reported per step. Targets stay the
  original ones. A method whose vectors still correlate at ``flag_threshold`` or more after the
  last step is flagged: its vectors do not depend on what the model learned. The model is reloaded
  from ``manifest["model"]`` (embedded name or checkpoint path) and checked against the stored
  model key; if that fails the report says why and skips the check.

Vectors are read in one basis per method level (:data:`semcontrib.validity.SCORE_BASIS`): region
sums for the region methods (their scores), :data:`semcontrib.validity.SCORE_BASIS` ``["pixel"]`` for
the pixel methods (``--basis`` overrides both). Spearman ignores any per-image positive rescaling, so
the normalisation does not matter.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from semcontrib.corpus import Corpus
from semcontrib.settings import SCORE_BASIS
from semcontrib.validity import ValidityConfig, spearman

logger = logging.getLogger(__name__)

VALIDITY_COLUMNS = ("faithfulness", "deletion_auc", "insertion_auc")
REPORT_JSON = "report.json"


@dataclass(frozen=True)
class ValidateConfig:
    """Options of the report.

    Attributes
    ----------
    sample : images in the randomisation check (each step recomputes every method on them).
    stages : backbone stages randomised after the heads, from the top (``pool`` excluded).
    seed : seed of the re-initialisation and of the image sample.
    basis : ``auto`` (per method level, see the module docs), ``mean`` or ``sum``.
    flag_threshold : a method whose median correlation after the last step is at least this is flagged.
    validity : how validity is computed when the corpus does not store it.
    batch_size : images per batch when recomputing.
    check_params : method -> parameters that replace the corpus's in the randomisation check, to
        bound its cost (default: shapley by sampling with 10 permutations above 6 regions; the
        original vectors of the check are recomputed with the same parameters, so every step
        compares like with like).
    """

    sample: int = 4
    stages: int = 2
    seed: int = 0
    basis: str = "auto"
    flag_threshold: float = 0.5
    validity: ValidityConfig = field(default_factory=ValidityConfig)
    batch_size: int = 8
    check_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"shapley": {"exact_max": 6, "samples": 10}})

    def __post_init__(self) -> None:
        if self.basis not in ("auto", "mean", "sum"):
            raise ValueError(f"basis must be auto, mean or sum, got {self.basis!r}")
        if not (isinstance(self.sample, int) and self.sample >= 0):
            raise ValueError(f"sample must be an integer >= 0 (0 skips the randomisation check), got {self.sample!r}")
        if not (isinstance(self.stages, int) and self.stages >= 0):
            raise ValueError(f"stages must be an integer >= 0, got {self.stages!r}")
        if not -1 <= self.flag_threshold <= 1:
            raise ValueError(f"flag_threshold must lie in [-1, 1], got {self.flag_threshold!r}")


# --------------------------------------------------------------------------- pure summaries


def summarise(values: np.ndarray) -> dict[str, float | int | None]:
    """Median, quartiles and count of the finite values (None where there are none)."""
    v = np.asarray(values, dtype=np.float64)
    fin = v[np.isfinite(v)]
    if not fin.size:
        return {"median": None, "q1": None, "q3": None, "n": 0, "n_nan": int(v.size)}
    q1, med, q3 = np.percentile(fin, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "n": int(fin.size),
            "n_nan": int(v.size - fin.size)}


def anti_correlated_share(faithfulness: np.ndarray) -> float | None:
    """Share of finite faithfulness values below 0 (scores ordered against the deletion effect)."""
    v = np.asarray(faithfulness, dtype=np.float64)
    fin = v[np.isfinite(v)]
    return float(np.mean(fin < 0)) if fin.size else None


def rowwise_spearman(a: np.ndarray, b: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Spearman between rows of two (N, K) arrays over the present regions of each row.

    Returns float64 (N,); NaN where fewer than 3 regions are present or a side is constant.
    """
    out = np.full(a.shape[0], np.nan)
    for n in range(a.shape[0]):
        idx = np.flatnonzero(present[n])
        if len(idx) >= 3 and np.all(np.isfinite(a[n, idx])) and np.all(np.isfinite(b[n, idx])):
            out[n] = spearman(a[n, idx], b[n, idx])
    return out


def _median(v: np.ndarray) -> float | None:
    fin = np.asarray(v, dtype=np.float64)
    fin = fin[np.isfinite(fin)]
    return float(np.median(fin)) if fin.size else None


# --------------------------------------------------------------------------- reading the corpus


def method_level(method: str) -> str:
    """``pixel`` or ``region`` for a registered method name (``pixel`` for unknown names)."""
    from semcontrib.attribution import ATTRIBUTION_METHODS

    cls = ATTRIBUTION_METHODS.get(method)
    return str(getattr(cls, "level", "pixel"))


def method_basis(method: str, basis: str) -> str:
    return SCORE_BASIS[method_level(method)] if basis == "auto" else basis


def corpus_vectors(corpus: Corpus, head: str, method: str, basis: str, image_ids: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Region vectors of ``image_ids`` from the corpus: scores float64 (N, K) and present bool (N, K).

    Images without a vector get NaN scores and no present region.
    """
    K = len(corpus.vocabulary)
    df = corpus.contribution_table(head, method, normalisation="signed_l1", basis=basis)
    pos = {i: n for n, i in enumerate(image_ids)}
    scores = np.full((len(image_ids), K), np.nan)
    present = np.zeros((len(image_ids), K), bool)
    df = df[df["image_id"].isin(pos)]
    rows = df["image_id"].map(pos).to_numpy(np.int64)
    cols = df["region_index"].to_numpy(np.int64)
    scores[rows, cols] = df["score"].to_numpy(np.float64)
    present[rows, cols] = ~df["absent"].to_numpy(bool)
    return scores, present


def _targets_table(corpus: Corpus, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """head -> int64 (N,) target index (the first method's; every method explains the same target)."""
    att = corpus.attributions
    out = {}
    for h in corpus.heads:
        sub = att[att["head"] == h].drop_duplicates("image_id").set_index("image_id")["target_index"]
        out[h] = sub.reindex(list(image_ids)).fillna(-1).to_numpy(np.int64)
    return out


def load_corpus_model(corpus: Corpus) -> tuple[Any, str]:
    """The corpus's model reloaded from its manifest, or (None, the reason it could not be)."""
    from semcontrib.model import MODELS, load_model, model_key

    ident = corpus.manifest.get("model", {})
    source = ident.get("checkpoint") or ident.get("name")
    if not source:
        return None, "the manifest names no model"
    if "checkpoint" not in ident and source not in MODELS:
        return None, f"model {source!r} is neither an embedded model ({sorted(MODELS)}) nor a checkpoint"
    try:
        model = load_model(source)
    except (ValueError, OSError) as exc:
        return None, f"model {source!r} could not be loaded: {exc}"
    if ident.get("key") and model_key(model) != ident["key"]:
        return None, f"model {source!r} loads, but its key {model_key(model)} is not the corpus's {ident['key']}"
    return model, ""


def _load_tensor(corpus: Corpus, model: Any, image_ids: Sequence[str]) -> tuple[list[str], Any, np.ndarray, str]:
    """Preprocessed images and region maps of those ids that can be read; ids used, tensor, labels, note."""
    import torch

    from semcontrib.imageio import ImageLoadError, load_rgb, resize_rgb

    paths = corpus.images.set_index("image_id")["path"]
    used, tensors, labels, problems = [], [], [], []
    for i in image_ids:
        rmap = corpus.region_map(i)
        try:
            rgb = load_rgb(Path(paths[i])).rgb
        except (ImageLoadError, OSError, KeyError) as exc:
            problems.append(f"{i}: {exc}")
            continue
        if rmap is None:
            problems.append(f"{i}: no region map")
            continue
        used.append(i)
        tensors.append(model.preprocess(resize_rgb(rgb, model.input_size)))
        labels.append(rmap.labels.astype(np.int32))
    note = f"{len(problems)} images unreadable ({'; '.join(problems[:3])})" if problems else ""
    tensor = torch.cat(tensors) if tensors else None
    return used, tensor, (np.stack(labels) if labels else np.zeros((0, 0, 0), np.int32)), note


def make_corpus_method(corpus: Corpus, method: str, overrides: dict[str, Any] | None = None) -> Any:
    """The method object with the corpus's parameters (those its constructor takes), updated by ``overrides``."""
    from semcontrib.attribution import ATTRIBUTION_METHODS

    cls = ATTRIBUTION_METHODS[method]
    params = {**corpus.manifest["methods"][method].get("params", {}), **(overrides or {})}
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in params.items() if k in accepted})


def region_vectors(model: Any, method_obj: Any, tensor: Any, targets: dict[str, Any], labels: np.ndarray,
                   vocabulary: tuple[str, ...], basis: str) -> dict[str, np.ndarray]:
    """Per head, float64 (N, K) region vectors of one method, in ``basis`` (as the corpus stores them)."""
    from semcontrib.contributions import aggregate

    K = len(vocabulary)
    counts = np.stack([np.bincount(lab[lab >= 0].ravel(), minlength=K) for lab in labels]).astype(np.float64)
    if getattr(method_obj, "level", "pixel") == "region":
        res = method_obj.attribute_regions(model, tensor, targets, labels, vocabulary)
        sums = {h: r.scores for h, r in res.items()}
    else:
        res = method_obj.attribute_batch(model, tensor, targets)
        sums = {h: np.stack([aggregate(r.maps[n].astype(np.float64), labels[n], K).sum for n in range(len(labels))])
                for h, r in res.items()}
    if basis == "sum":
        return sums
    return {h: np.divide(s, counts, out=np.zeros_like(s), where=counts > 0) for h, s in sums.items()}


# --------------------------------------------------------------------------- validity and randomisation


def _validity_frame(corpus: Corpus, model: Any, config: ValidateConfig) -> tuple[pd.DataFrame | None, str]:
    """Rows (image_id, head, method, faithfulness, deletion_auc, insertion_auc): stored or computed."""
    att = corpus.attributions
    recorded = corpus.manifest.get("validity", True) is not None  # None: analysed with --no-validity
    if recorded and set(VALIDITY_COLUMNS) <= set(att.columns) and att[list(VALIDITY_COLUMNS)].notna().any().any():
        return att[["image_id", "head", "method", *VALIDITY_COLUMNS]].copy(), "stored in the corpus"
    if model is None:
        return None, "not stored in the corpus, and the model is unavailable to compute it"
    import torch

    from semcontrib.validity import compute_validity

    ids = corpus.image_ids()
    rows: list[dict[str, Any]] = []
    notes = []
    for start in range(0, len(ids), config.batch_size):
        used, tensor, labels, note = _load_tensor(corpus, model, ids[start:start + config.batch_size])
        if note:
            notes.append(note)
        if not used:
            continue
        tgt = _targets_table(corpus, used)
        ok = np.all([t >= 0 for t in tgt.values()], axis=0)
        used = [u for u, k in zip(used, ok) if k]
        tensor, labels = tensor[torch.from_numpy(ok)], labels[ok]
        targets = {h: torch.from_numpy(t[ok]) for h, t in tgt.items()}
        scores = {m: {h: corpus_vectors(corpus, h, m, method_basis(m, config.basis), used)[0] for h in corpus.heads}
                  for m in corpus.methods}
        for (m, h), rec in compute_validity(model, tensor, labels, tuple(corpus.vocabulary), targets, scores,
                                            config.validity).items():
            for n, i in enumerate(used):
                rows.append({"image_id": i, "head": h, "method": m, "faithfulness": rec.faithfulness[n],
                             "deletion_auc": rec.deletion_auc[n], "insertion_auc": rec.insertion_auc[n]})
    how = f"computed by validate (baseline {config.validity.baseline})" + (f"; {'; '.join(notes)}" if notes else "")
    return pd.DataFrame(rows, columns=["image_id", "head", "method", *VALIDITY_COLUMNS]), how


def randomisation_steps(model: Any, stages: int) -> list[str]:
    """``heads`` then ``backbone.STAGE`` for the top ``stages`` backbone stages (``pool`` and
    parameter-free stages excluded), in the order they are randomised."""
    names = [n for n, mod in model.backbone.named_children() if n != "pool" and any(True for _ in mod.parameters())]
    return ["heads", *(f"backbone.{n}" for n in reversed(names[-stages:] if stages else []))]


def randomise(model: Any, step: str, seed: int) -> None:
    """Re-initialise every layer of the heads (``heads``) or of one backbone stage (``backbone.STAGE``),
    in place, seeded."""
    import torch

    if step != "heads" and not step.startswith("backbone."):
        raise ValueError(f"a randomisation step is 'heads' or 'backbone.STAGE', got {step!r}")
    part = model.heads if step == "heads" else model.backbone[model.stage_index(step[len("backbone."):])]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for mod in part.modules():
            reset = getattr(mod, "reset_parameters", None)
            if callable(reset):
                reset()
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()


def randomisation_check(corpus: Corpus, model: Any, config: ValidateConfig) -> dict[str, Any]:
    """Cascading model randomisation on a sample; per (head, method) the median correlation per step."""
    import torch

    rng = np.random.default_rng(config.seed)
    ids = corpus.image_ids()
    sample = sorted(rng.choice(len(ids), size=min(config.sample, len(ids)), replace=False).tolist())
    used, tensor, labels, note = _load_tensor(corpus, model, [ids[k] for k in sample])
    if not used:
        return {"status": "skipped", "reason": f"no sample image could be read; {note}"}
    tgt = _targets_table(corpus, used)
    targets = {h: torch.from_numpy(np.maximum(t, 0)) for h, t in tgt.items()}
    vocab = tuple(corpus.vocabulary)
    K = len(vocab)
    present = np.stack([np.bincount(lab[lab >= 0].ravel(), minlength=K) > 0 for lab in labels])
    methods = {m: make_corpus_method(corpus, m, config.check_params.get(m)) for m in corpus.methods}
    bases = {m: method_basis(m, config.basis) for m in methods}
    steps = randomisation_steps(model, config.stages)
    work = copy.deepcopy(model)
    original = {m: region_vectors(work, obj, tensor, targets, labels, vocab, bases[m]) for m, obj in methods.items()}
    result: dict[str, Any] = {"status": "done", "sample": used, "steps": steps, "note": note,
                              "method_params": {m: config.check_params[m] for m in methods if m in config.check_params},
                              "flag_threshold": config.flag_threshold, "per": {}}
    for s, step in enumerate(steps):
        randomise(work, step, config.seed + s)
        for m, obj in methods.items():
            vec = region_vectors(work, obj, tensor, targets, labels, vocab, bases[m])
            for h in corpus.heads:
                rho = rowwise_spearman(original[m][h], vec[h], present)
                result["per"].setdefault(f"{h}|{m}", []).append(_median(rho))
    return result


# --------------------------------------------------------------------------- the report


def build_report(corpus: Corpus, config: ValidateConfig = ValidateConfig(), model: Any = None) -> dict[str, Any]:
    """The report as a JSON-ready dict (see the module docs).

    Parameters
    ----------
    corpus : the corpus to judge.
    config : options.
    model : the corpus's model; default: reloaded from the manifest (``load_corpus_model``).
    """
    reason = ""
    if model is None:
        model, reason = load_corpus_model(corpus)
    frame, validity_source = _validity_frame(corpus, model, config)
    ids = corpus.image_ids()
    vectors = {(h, m): corpus_vectors(corpus, h, m, method_basis(m, config.basis), ids)
               for h in corpus.heads for m in corpus.methods}
    if model is None:
        rand: dict[str, Any] = {"status": "skipped", "reason": reason}
    elif config.sample == 0:
        rand = {"status": "skipped", "reason": "sample 0"}
    else:
        rand = randomisation_check(corpus, model, config)
    entries = []
    for h in corpus.heads:
        for m in corpus.methods:
            e: dict[str, Any] = {"head": h, "method": m, "level": method_level(m),
                                 "basis": method_basis(m, config.basis)}
            if frame is not None:
                sub = frame[(frame["head"] == h) & (frame["method"] == m)]
                for c in VALIDITY_COLUMNS:
                    e[c] = summarise(sub[c].to_numpy(np.float64))
                e["anti_correlated_share"] = anti_correlated_share(sub["faithfulness"].to_numpy(np.float64))
            a, pa = vectors[(h, m)]
            e["agreement"] = {}
            for other in corpus.methods:
                if other != m:
                    b, pb = vectors[(h, other)]
                    e["agreement"][other] = _median(rowwise_spearman(a, b, pa & pb))
            if rand["status"] == "done":
                curve = rand["per"][f"{h}|{m}"]
                last = curve[-1] if curve else None
                e["randomisation"] = {"steps": rand["steps"], "median_spearman": curve,
                                      "flagged": last is not None and last >= config.flag_threshold}
            else:
                e["randomisation"] = {"skipped": rand["reason"]}
            entries.append(e)
    return {
        "corpus": str(corpus.root),
        "model": corpus.manifest.get("model", {}).get("name"),
        "n_images": len(ids),
        "heads": corpus.heads,
        "methods": corpus.methods,
        "validity": validity_source,
        "config": {**{k: v for k, v in asdict(config).items() if k != "validity"},
                   "validity": config.validity.params},
        "randomisation": {k: v for k, v in rand.items() if k != "per"},
        "entries": entries,
    }


def _fmt(x: Any, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _spread(s: dict[str, Any] | None, signed: bool = True) -> str:
    if not s or s.get("median") is None:
        return "n/a"
    return f"{_fmt(s['median'], signed)} [{_fmt(s['q1'], signed)}, {_fmt(s['q3'], signed)}]"


def report_markdown(report: dict[str, Any], images: dict[str, str]) -> str:
    """The report as Markdown; ``images`` maps plot keys to file names."""
    out = ["# How far to trust each method", "",
           f"- **corpus**: {report['corpus']}",
           f"- **model**: {report['model']}",
           f"- **images**: {report['n_images']}",
           f"- **validity**: {report['validity']}",
           "- **faithfulness**: Spearman between a method's region scores and the target-logit drop when each "
           "region alone is removed (1: the scores order the regions as deletion does; < 0: against it).",
           "- **deletion AUC** (lower is better) and **insertion AUC** (higher is better): target probability "
           "while regions are removed / revealed in the method's order.", ""]
    for h in report["heads"]:
        out += [f"## {h}", "",
                "| method | basis | faithfulness median [q1, q3] | anti-correlated | deletion AUC | insertion AUC "
                "| agreement | randomisation (last step) |",
                "|---|---|---|---|---|---|---|---|"]
        for e in (e for e in report["entries"] if e["head"] == h):
            agree = ", ".join(f"{k} {_fmt(v)}" for k, v in e["agreement"].items()) or "n/a"
            r = e["randomisation"]
            if "skipped" in r:
                rtext = "skipped"
            else:
                last = r["median_spearman"][-1] if r["median_spearman"] else None
                rtext = f"{_fmt(last)}" + (" **FLAGGED**" if r["flagged"] else "")
            share = e.get("anti_correlated_share")
            out.append(f"| {e['method']} | {e['basis']} | {_spread(e.get('faithfulness'))} | "
                       f"{'n/a' if share is None else f'{100 * share:.0f}%'} | "
                       f"{_spread(e.get('deletion_auc'), False)} | {_spread(e.get('insertion_auc'), False)} | "
                       f"{agree} | {rtext} |")
        out.append("")
        if h in images:
            out += [f"![{h}]({images[h]})", ""]
    rand = report["randomisation"]
    out += ["## Model randomisation", ""]
    if rand["status"] == "done":
        out += [f"Steps (cumulative re-initialisation): {', '.join(rand['steps'])}; sample of "
                f"{len(rand['sample'])} images. Median Spearman of the region vectors to the original ones per "
                f"step; a method still at {rand['flag_threshold']:+.2f} or above after the last step is flagged: "
                "its vectors do not depend on what the model learned.", ""]
        if rand.get("method_params"):
            out += ["Parameters changed for this check (cost bound): "
                    + "; ".join(f"{m} {p}" for m, p in rand["method_params"].items()), ""]
        if rand.get("note"):
            out += [f"Note: {rand['note']}", ""]
        flagged = [f"{e['method']} ({e['head']})" for e in report["entries"] if e["randomisation"].get("flagged")]
        out += [f"Flagged: {', '.join(flagged) if flagged else 'none'}.", ""]
        if "randomisation" in images:
            out += [f"![randomisation]({images['randomisation']})", ""]
    else:
        out += [f"Skipped: {rand['reason']}.", ""]
    return "\n".join(out)


def _plot_head(report: dict[str, Any], frame_entries: list[dict[str, Any]], head: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ents = [e for e in frame_entries if e["head"] == head]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    names = [e["method"] for e in ents]
    for ax, key, title in zip(axes, VALIDITY_COLUMNS, ("faithfulness (higher: better)", "deletion AUC (lower)",
                                                       "insertion AUC (higher)")):
        med = [np.nan if not e.get(key) or e[key]["median"] is None else e[key]["median"] for e in ents]
        lo = [np.nan if not e.get(key) or e[key]["q1"] is None else e[key]["q1"] for e in ents]
        hi = [np.nan if not e.get(key) or e[key]["q3"] is None else e[key]["q3"] for e in ents]
        x = np.arange(len(ents))
        err = np.array([np.subtract(med, lo), np.subtract(hi, med)])
        ax.bar(x, np.nan_to_num(med), yerr=np.nan_to_num(err), capsize=3, color="#4c72b0")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="k", lw=0.5)
    fig.suptitle(f"{head}: median and quartiles over images", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _plot_randomisation(report: dict[str, Any]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    heads = report["heads"]
    fig, axes = plt.subplots(1, len(heads), figsize=(3.4 * len(heads), 3.0), squeeze=False)
    steps = ["original", *report["randomisation"]["steps"]]
    for ax, h in zip(axes[0], heads):
        for e in (e for e in report["entries"] if e["head"] == h):
            curve = [1.0, *[np.nan if v is None else v for v in e["randomisation"]["median_spearman"]]]
            ax.plot(range(len(steps)), curve, marker="o", label=e["method"])
        ax.set_xticks(range(len(steps)), steps, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(report["randomisation"]["flag_threshold"], color="r", lw=0.5, ls="--")
        ax.set_title(h, fontsize=9)
    axes[0][0].set_ylabel("median Spearman to original")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` with its PNG plots and a self-contained ``report.html``.

    Returns
    -------
    name -> path of every file written.
    """
    from semcontrib.report import markdown_to_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    names: dict[str, str] = {}
    for i, h in enumerate(report["heads"]):
        pngs[h] = _plot_head(report, report["entries"], h)
        names[h] = f"validity_{i}_{''.join(c if c.isalnum() else '_' for c in h)}.png"
    if report["randomisation"]["status"] == "done":
        pngs["randomisation"] = _plot_randomisation(report)
        names["randomisation"] = "randomisation.png"
    written: dict[str, Path] = {}
    for key, data in pngs.items():
        (out / names[key]).write_bytes(data)
        written[key] = out / names[key]
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, allow_nan=False, default=_json_default))
    md = report_markdown(report, names)
    (out / "report.md").write_text(md)
    html = markdown_to_html(md, pngs, names, title="semcontrib validity")
    (out / "report.html").write_text(html)
    written.update({"json": out / REPORT_JSON, "markdown": out / "report.md", "html": out / "report.html"})
    return written


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


# --------------------------------------------------------------------------- the command


def run_validate(args: argparse.Namespace) -> int:
    corpus = Corpus.open(args.corpus)
    config = ValidateConfig(sample=args.sample, stages=args.stages, seed=args.seed, basis=args.basis,
                            validity=ValidityConfig(baseline=args.validity_baseline))
    report = build_report(corpus, config)
    out = Path(args.out) if args.out else Path(args.corpus) / "validity_report"
    files = write_report(report, out)
    print(f"validity: {report['validity']}")
    print(f"randomisation: {report['randomisation']['status']} {report['randomisation'].get('reason', '')}".rstrip())
    for e in report["entries"]:
        f = e.get("faithfulness") or {}
        flag = " FLAGGED (randomisation)" if e["randomisation"].get("flagged") else ""
        print(f"  {e['head']:>12} {e['method']:>10}: faithfulness median {_fmt(f.get('median'))}{flag}")
    print(f"report: {files['html']}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``validate`` to the ``semcontrib`` command's subparsers."""
    from semcontrib.settings import PERTURBATION_BASELINES as BASELINES

    p = subparsers.add_parser(
        "validate", help="report how far each method's region vectors can be trusted",
        description="Faithfulness, deletion / insertion AUC, agreement between methods and a model-"
        "randomisation sanity check per head and method of CORPUS; writes report.json, report.md and "
        "report.html into DIR.")
    p.add_argument("corpus", help="a corpus written by `semcontrib analyze`")
    p.add_argument("-o", "--out", default=None, help="report folder (default CORPUS/validity_report)")
    p.add_argument("--sample", type=int, default=4, help="images in the randomisation check (0: skip it)")
    p.add_argument("--stages", type=int, default=2, help="backbone stages randomised after the heads")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomisation check and the sample")
    p.add_argument("--basis", default="auto", choices=("auto", "mean", "sum"),
                   help="region vector basis (auto: region sums for region methods, see docs/trust.md)")
    p.add_argument("--validity-baseline", default="blur", choices=list(BASELINES),
                   help="baseline when validity must be computed (corpus without validity columns)")
    p.set_defaults(func=run_validate)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m semcontrib.validate CORPUS``) until ``semcontrib.cli`` wires it."""
    parser = argparse.ArgumentParser(prog="semcontrib")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["validate", *(argv or [])])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    import sys

    raise SystemExit(main(sys.argv[1:]))
