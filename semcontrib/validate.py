"""``semcontrib validate CORPUS [-o DIR]``: how far each method's region vectors can be trusted.

A report per head x method (``report.json``, ``report.md`` with PNG plots beside it, and a
self-contained ``report.html``):

* **faithfulness** (median, quartiles, count) and the share of images whose scores
  *anti*-correlate with deletion (faithfulness < 0); the **MoRF** and **LeRF deletion AUCs**, the
  **random-order reference** and the **gain over random** per image (``random - MoRF``, ``LeRF -
  random``; median, quartiles). Read from the corpus's attributions table when it has the columns
  (:data:`VALIDITY_COLUMNS`), otherwise computed here with
  :func:`semcontrib.validity.compute_validity` (needs the model and the image files). A method
  judged by its own perturbation (the record's note starts with ``circular``) is marked, and its
  faithfulness is not evidence;
* **agreement** between methods: per head and pair of methods, the median over images of the
  Spearman correlation between their region vectors (present regions only);
* **model randomisation**: smooth and efficient MPRT (Quantus 0.5 ``SmoothMPRT`` and
  ``EfficientMPRT``; :mod:`semcontrib.validity_randomisation`): per randomisation step, the median
  Spearman correlation of the noise-averaged region vectors to the original ones and the median
  complexity ratio after / before; a method still correlating at ``flag_threshold`` or more after
  the last step is flagged. The model is reloaded from ``manifest["model"]`` (embedded name or
  checkpoint path) and checked against the stored model key; if that fails the report says why and
  skips the check;
* **trust ranking** per head: the methods ordered by median faithfulness, best first; a method
  whose record is circular is listed apart and not ranked (its number restates its definition).

Vectors are read in one basis per method level (:data:`semcontrib.settings.SCORE_BASIS`, see
:mod:`semcontrib.validity_inputs`; ``--basis`` overrides it). Spearman ignores any per-image positive
rescaling, so the normalisation does not matter.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from semcontrib.corpus import Corpus
from semcontrib.validity import CIRCULAR, ValidityConfig, circular
from semcontrib.validity_inputs import (  # ValidateConfig lives there (no import circle), exported here
    ValidateConfig,
    corpus_vectors,
    load_corpus_model,
    load_tensor,
    method_basis,
    method_level,
    targets_table,
)
from semcontrib.validity_randomisation import median_finite, randomisation_check, rowwise_spearman

logger = logging.getLogger(__name__)

VALIDITY_COLUMNS = ("faithfulness", "deletion_auc", "lerf_auc", "random_auc", "insertion_auc")
REPORT_JSON = "report.json"


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


def trust_ranking(entries: list[dict[str, Any]], head: str) -> dict[str, Any]:
    """The methods of one head ordered by median faithfulness, best first; circular records apart.

    A method whose record is circular (judged by the perturbation it scores with) is not ranked: its
    faithfulness restates its definition. Methods without a finite median are listed apart too.

    Examples
    --------
    >>> es = [{"head": "h", "method": "a", "faithfulness": {"median": 0.2}},
    ...       {"head": "h", "method": "occ", "faithfulness": {"median": 1.0}, "circular": True},
    ...       {"head": "h", "method": "b", "faithfulness": {"median": 0.5}}]
    >>> trust_ranking(es, "h")
    {'ranked': [('b', 0.5), ('a', 0.2)], 'not_ranked': {'occ': 'circular'}}
    """
    ranked: list[tuple[str, float]] = []
    apart: dict[str, str] = {}
    for e in (e for e in entries if e["head"] == head):
        med = (e.get("faithfulness") or {}).get("median")
        if e.get("circular"):
            apart[e["method"]] = CIRCULAR
        elif med is None:
            apart[e["method"]] = "no faithfulness value"
        else:
            ranked.append((e["method"], float(med)))
    return {"ranked": sorted(ranked, key=lambda mv: -mv[1]), "not_ranked": apart}


# --------------------------------------------------------------------------- validity and randomisation


def _validity_frame(corpus: Corpus, model: Any, config: ValidateConfig) -> tuple[pd.DataFrame | None, str]:
    """Rows (image_id, head, method, *VALIDITY_COLUMNS, validity_note): stored or computed."""
    att = corpus.attributions
    recorded = corpus.manifest.get("validity", True) is not None  # None: analysed with --no-validity
    if recorded and set(VALIDITY_COLUMNS) <= set(att.columns) and att[list(VALIDITY_COLUMNS)].notna().any().any():
        frame = att[["image_id", "head", "method", *VALIDITY_COLUMNS]].copy()
        frame["validity_note"] = att["validity_note"].astype(str) if "validity_note" in att.columns else ""
        return frame, "stored in the corpus"
    if model is None:
        return None, "not stored in the corpus, and the model is unavailable to compute it"
    import torch

    from semcontrib.validity import compute_validity

    ids = corpus.image_ids()
    rows: list[dict[str, Any]] = []
    notes = []
    circ = {m for m in corpus.methods
            if circular(method_level(m), dict(corpus.manifest["methods"][m].get("params", {})), config.validity)}
    for start in range(0, len(ids), config.batch_size):
        used, tensor, labels, note = load_tensor(corpus, model, ids[start:start + config.batch_size])
        if note:
            notes.append(note)
        if not used:
            continue
        tgt = targets_table(corpus, used)
        ok = np.all([t >= 0 for t in tgt.values()], axis=0)
        used = [u for u, k in zip(used, ok) if k]
        tensor, labels = tensor[torch.from_numpy(ok)], labels[ok]
        targets = {h: torch.from_numpy(t[ok]) for h, t in tgt.items()}
        scores = {m: {h: corpus_vectors(corpus, h, m, method_basis(m, config.basis), used)[0] for h in corpus.heads}
                  for m in corpus.methods}
        for (m, h), rec in compute_validity(model, tensor, labels, tuple(corpus.vocabulary), targets, scores,
                                            config=config.validity, circular_methods=circ).items():
            for n, i in enumerate(used):
                rows.append({"image_id": i, "head": h, "method": m,
                             **{c: getattr(rec, c)[n] for c in VALIDITY_COLUMNS}, "validity_note": rec.note[n]})
    how = f"computed by validate (baseline {config.validity.baseline})" + (f"; {'; '.join(notes)}" if notes else "")
    return pd.DataFrame(rows, columns=["image_id", "head", "method", *VALIDITY_COLUMNS, "validity_note"]), how


# --------------------------------------------------------------------------- the report


def _validity_entry(sub: pd.DataFrame) -> dict[str, Any]:
    """The validity fields of a report entry from the validity rows of one (head, method)."""
    e: dict[str, Any] = {c: summarise(sub[c].to_numpy(np.float64)) for c in VALIDITY_COLUMNS}
    e["anti_correlated_share"] = anti_correlated_share(sub["faithfulness"].to_numpy(np.float64))
    rnd = sub["random_auc"].to_numpy(np.float64)
    e["gain_over_random"] = {"morf": summarise(rnd - sub["deletion_auc"].to_numpy(np.float64)),
                             "lerf": summarise(sub["lerf_auc"].to_numpy(np.float64) - rnd)}
    e["circular"] = bool(sub["validity_note"].astype(str).str.startswith(CIRCULAR).any())
    return e


def _randomisation_entry(rand: dict[str, Any], key: str, flag_threshold: float) -> dict[str, Any]:
    """The randomisation field of the report entry of ``key`` (``"head|method"``) from the check's result."""
    if rand["status"] != "done":
        return {"skipped": rand["reason"]}
    curve = rand["per"][key]
    last = curve[-1] if curve else None
    return {"steps": rand["steps"], "median_spearman": curve, "complexity_ratio": rand["complexity"][key],
            "flagged": last is not None and last >= flag_threshold}


def build_report(corpus: Corpus, config: ValidateConfig | None = None, model: Any = None) -> dict[str, Any]:
    """The report as a JSON-ready dict (see the module docs).

    Parameters
    ----------
    corpus : the corpus to judge.
    config : options (default: ``ValidateConfig()``).
    model : the corpus's model; default: reloaded from the manifest (``load_corpus_model``).
    """
    config = ValidateConfig() if config is None else config
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
                e.update(_validity_entry(frame[(frame["head"] == h) & (frame["method"] == m)]))
            a, pa = vectors[(h, m)]
            e["agreement"] = {}
            for other in corpus.methods:
                if other != m:
                    b, pb = vectors[(h, other)]
                    e["agreement"][other] = median_finite(rowwise_spearman(a, b, pa & pb))
            e["randomisation"] = _randomisation_entry(rand, f"{h}|{m}", config.flag_threshold)
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
        "randomisation": {k: v for k, v in rand.items() if k not in ("per", "complexity")},
        "entries": entries,
        "ranking": {h: trust_ranking(entries, h) for h in corpus.heads} if frame is not None else {},
        **({"region_quality": region_quality_section(corpus, config.truth)} if config.truth else {}),
    }


def region_quality_section(corpus: Corpus, truth: str) -> dict[str, Any]:
    """The corpus's regions against annotations (``semcontrib regions-eval``): its JSON record and its
    Markdown, or the reason it could not be computed (a bad annotation file does not stop the report)."""
    from semcontrib.regions_eval import evaluate_corpus, format_report, report_record

    try:
        ev = evaluate_corpus(corpus, truth)
    except (ValueError, OSError) as exc:
        return {"truth": str(truth), "skipped": str(exc)}
    return {"truth": str(truth), "record": report_record(ev), "markdown": format_report(ev)}


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
           "- **MoRF / LeRF AUC**: target probability while regions are removed most- / least-relevant first "
           "(MoRF lower is better, LeRF higher); **random**: the same for a random order of the same regions "
           "(the reference of both). **Gain over random**: random - MoRF and LeRF - random, per image "
           "(> 0: the method's order beats a random one).",
           "- **circular**: the method scores with the perturbation this test removes regions with, so its "
           "faithfulness restates its definition and is not evidence (not ranked).", ""]
    for h in report["heads"]:
        out += [f"## {h}", "",
                "| method | basis | faithfulness median [q1, q3] | anti-correlated | MoRF AUC | LeRF AUC | random AUC "
                "| gain over random: MoRF | gain: LeRF | agreement | randomisation: Spearman, complexity ratio "
                "(last step) |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        out += [_entry_row(e) for e in report["entries"] if e["head"] == h]
        out.append("")
        rank = report.get("ranking", {}).get(h)
        if rank:
            out.append("Trust ranking (median faithfulness, best first): "
                       + (", ".join(f"{m} {_fmt(v)}" for m, v in rank["ranked"]) or "none")
                       + "".join(f"; not ranked: {m} ({why})" for m, why in rank["not_ranked"].items()) + ".")
            out.append("")
        if h in images:
            out += [f"![{h}]({images[h]})", ""]
    out += _randomisation_markdown(report, images)
    quality = report.get("region_quality")
    if quality:  # regions-eval's Markdown, one heading level down
        out += ["## Region quality against annotations", ""]
        if "skipped" in quality:
            out += [f"Skipped ({quality['truth']}): {quality['skipped']}", ""]
        else:
            out += [("#" + line) if line.startswith("#") else line for line in quality["markdown"].splitlines()]
            out.append("")
    return "\n".join(out)


def _entry_row(e: dict[str, Any]) -> str:
    """The Markdown table row of one report entry."""
    agree = ", ".join(f"{k} {_fmt(v)}" for k, v in e["agreement"].items()) or "n/a"
    r = e["randomisation"]
    if "skipped" in r:
        rtext = "skipped"
    else:
        last = r["median_spearman"][-1] if r["median_spearman"] else None
        ratio = r.get("complexity_ratio") or [None]
        rtext = f"{_fmt(last)}, x{_fmt(ratio[-1], False)}" + (" **FLAGGED**" if r["flagged"] else "")
    share = e.get("anti_correlated_share")
    gain = e.get("gain_over_random") or {}
    faith = _spread(e.get("faithfulness")) + (" (circular: not evidence)" if e.get("circular") else "")
    return (f"| {e['method']} | {e['basis']} | {faith} | "
            f"{'n/a' if share is None else f'{100 * share:.0f}%'} | "
            f"{_spread(e.get('deletion_auc'), False)} | {_spread(e.get('lerf_auc'), False)} | "
            f"{_spread(e.get('random_auc'), False)} | {_spread(gain.get('morf'))} | "
            f"{_spread(gain.get('lerf'))} | {agree} | {rtext} |")


def _randomisation_markdown(report: dict[str, Any], images: dict[str, str]) -> list[str]:
    """The report's "Model randomisation" section, as Markdown lines."""
    rand = report["randomisation"]
    out = ["## Model randomisation", ""]
    if rand["status"] == "done":
        out += [f"Steps (cumulative re-initialisation): {', '.join(rand['steps'])}; sample of "
                f"{len(rand['sample'])} images; every vector averaged over {rand.get('noise_samples', 1)} noisy "
                f"copies of the image (sMPRT, noise {rand.get('noise_magnitude', 0)} x the value range). Median "
                "Spearman of the region vectors to the original ones per step, and the median complexity ratio "
                "after / before (eMPRT: entropy of |v|; > 1: more spread out once the model is randomised). A "
                f"method still at {rand['flag_threshold']:+.2f} or above after the last step is flagged: "
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
    return out


def _plot_head(report: dict[str, Any], frame_entries: list[dict[str, Any]], head: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ents = [e for e in frame_entries if e["head"] == head]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    names = [e["method"] for e in ents]
    for ax, key, title in zip(axes, VALIDITY_COLUMNS, ("faithfulness (higher: better)", "MoRF AUC (lower)",
                                                       "LeRF AUC (higher)")):
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
                            validity=ValidityConfig(baseline=args.validity_baseline, steps=args.validity_steps,
                                                    random_samples=args.validity_random_samples),
                            noise_samples=args.noise_samples, truth=args.truth)
    report = build_report(corpus, config)
    out = Path(args.out) if args.out else Path(args.corpus) / "validity_report"
    files = write_report(report, out)
    print(f"validity: {report['validity']}")
    print("  (gain over random: random - MoRF AUC and LeRF - random AUC, medians; > 0 beats a random order)")
    print(f"randomisation: {report['randomisation']['status']} {report['randomisation'].get('reason', '')}".rstrip())
    for e in report["entries"]:
        f = e.get("faithfulness") or {}
        flag = " FLAGGED (randomisation)" if e["randomisation"].get("flagged") else ""
        g = e.get("gain_over_random") or {}
        circ = " (circular: not evidence)" if e.get("circular") else ""
        print(f"  {e['head']:>12} {e['method']:>10}: faithfulness median {_fmt(f.get('median'))}{circ}, gain over "
              f"random MoRF {_fmt((g.get('morf') or {}).get('median'))} LeRF "
              f"{_fmt((g.get('lerf') or {}).get('median'))}{flag}")
    for h, rank in report["ranking"].items():
        apart = "".join(f"; not ranked: {m} ({why})" for m, why in rank["not_ranked"].items())
        print(f"  trust ranking {h}: " + (" > ".join(m for m, _ in rank["ranked"]) or "none") + apart)
    print(f"report: {files['html']}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``validate`` to the ``semcontrib`` command's subparsers."""
    from semcontrib.settings import DEFAULT_VALIDITY_BASELINE, VALIDITY_RANDOM_SAMPLES, VALIDITY_STEPS
    from semcontrib.settings import VALIDITY_BASELINES as BASELINES

    p = subparsers.add_parser(
        "validate", help="report how far each method's region vectors can be trusted",
        description="Faithfulness, MoRF / LeRF deletion AUCs and their gain over a random order, agreement "
        "between methods, a model-randomisation sanity check (smooth / efficient MPRT) and a trust ranking per "
        "head and method of CORPUS; writes report.json, report.md and report.html into DIR.")
    p.add_argument("corpus", help="a corpus written by `semcontrib analyze`")
    p.add_argument("-o", "--out", default=None, help="report folder (default CORPUS/validity_report)")
    p.add_argument("--sample", type=int, default=4, help="images in the randomisation check (0: skip it)")
    p.add_argument("--stages", type=int, default=2, help="backbone stages randomised after the heads")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomisation check and the sample")
    p.add_argument("--basis", default="auto", choices=("auto", "mean", "sum"),
                   help="region vector basis (auto: region sums for region methods, see docs/trust.md)")
    p.add_argument("--validity-baseline", default=DEFAULT_VALIDITY_BASELINE, choices=list(BASELINES),
                   help="how regions are removed when validity must be computed (corpus without validity "
                   "columns); default road (ROAD's noisy linear imputation)")
    p.add_argument("--validity-steps", type=int, default=VALIDITY_STEPS,
                   help="points per deletion curve when validity must be computed (0: full curves, the precise "
                   "and costly setting; see docs/trust.md)")
    p.add_argument("--validity-random-samples", type=int, default=VALIDITY_RANDOM_SAMPLES,
                   help="seeded random orders of the random reference where it is not exact (more: more precise)")
    p.add_argument("--noise-samples", type=int, default=3,
                   help="noisy copies each vector of the randomisation check is averaged over (sMPRT)")
    p.add_argument("--truth", default=None, metavar="ANNOTATIONS",
                   help="annotations of the corpus's images (COCO, Label Studio or PNG maps): add the region "
                   "quality of `semcontrib regions-eval` to the report")
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
