"""The million-image flow (issue 22): every scaling figure of a corpus of ``--n`` images in one run.

A synthetic corpus of ``--n`` images x 4 heads x 3 methods x 8 regions is written through the real store
(``semcontrib.corpus``: ``write_part``, ``add_default_scores``, ``make_manifest``, ``publish``; tables only,
random but clustered numbers, drawn one head x method partition at a time so that writing it needs about
1 GB at a million). Then, each phase in its own process (its peak memory is its own; a watchdog kills a
phase whose resident memory passes ``--mem-limit-gb`` and reports it as over the limit):

* ``plan``: ``--n`` tiny files (8 bytes each, distinct, so every one is a new image to the planner, in
  folders of 1,000) are listed and planned (``read_inputs`` + ``make_plan``, what a run does before it
  looks at any chunk): the first run (hashes every file), a rerun with nothing to do, and a run after
  adding 1 %. The same on ``--baseline-n`` inputs with the engine before vectorised planning (git
  ``--baseline-ref``) and with this one, for the ratio;
* ``open``: ``Corpus.open`` (the lazy corpus: manifest, images table, the parts' footers);
* ``engine``: the dashboard's reader (``CorpusQuery``) on one view (landscape, lrp, signed_l1, mean):
  score matrix, filter, lasso, table sort, export of a 100k selection, and its resident memory;
  ``open``, ``engine`` and ``dashboard`` also run with the reader before the lazy corpus
  (``--reader-ref``) in the same run, up to ``--reader-baseline-n`` images;
* ``view``: the same view functions (``dashboard.views``, ``corpus.score_table``, the export's CSV
  writer) on a view read lazily (pyarrow, the columns of the view's one head x method partition):
  what a lazy corpus (issue 22 item 2) would give;
* ``dashboard``: ``create_app`` and the first callbacks the browser calls (filter panel, embedding
  lookup), then filter and lasso-to-selection updates through the real callbacks
  (``bench_dashboard.measure``), and the server's peak memory;
* ``compact``: the corpus of ``--compact-n`` images written once, and grown by ``--compact-runs``
  incremental parts per partition; reading every table of each, ``semcontrib compact``'s ``compact()``
  on the grown one, reading it again, and the tables equal before and after;
* ``embed``: openTSNE fit on ``--embed-fit`` seeded images (the dashboard's ``max_fit``) and
  ``transform`` of the rest (timed on ``--embed-place`` of them and scaled to all when fewer, and then
  said so), and a nearest-point lookup (scipy cKDTree) for hover in density mode.

Every figure is printed with its goal from the issue, whether it is met, and the baseline and ratio
where one is measured in the same run; bytes on disk of each corpus too.

Run: ``python benchmarks/bench_million.py --n 1000000`` (about 30 minutes on 2 cores, 12 GB of disk);
``--n 100000`` for a quicker look; ``--phases plan,view`` for some phases; ``--json`` for one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
HEADS = {"landscape": ["forest", "coast", "mountain", "urban", "field"], "nature": ["nature", "non_nature"],
         "biotic": ["biotic", "abiotic", "mixed"], "material": ["material", "immaterial"]}
METHODS = ("lrp", "gradcam", "ig")
VOCABULARY = ("sky", "water", "vegetation", "bare_ground", "built", "person", "animal", "other")
CHUNK = 128
VIEW = ("landscape", "lrp", "signed_l1", "mean")
PHASES = ("corpus", "plan", "open", "engine", "view", "dashboard", "compact", "embed")
GOALS = {  # figure -> (goal text, test on the measured value)
    "plan_rerun_wall_s": ("<= 20 s", lambda v: v <= 20),
    "plan_rerun_peak_mb": ("<= 2048 MB", lambda v: v <= 2048),
    "plan_add_share": ("<= 5 % of the first run", lambda v: v <= 0.05),
    "first_render_s": ("<= 10 s", lambda v: v <= 10),
    "server_rss_mb": ("<= 4096 MB", lambda v: v <= 4096),
    "filter_ms": ("<= 300 ms", lambda v: v <= 300),
    "lasso_ms": ("<= 500 ms", lambda v: v <= 500),
    "sort_ms": ("<= 1000 ms", lambda v: v <= 1000),
    "export_s": ("<= 5 s", lambda v: v <= 5),
    "compacted_read_ratio": ("<= 1.2x written once", lambda v: v <= 1.2),
}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink())


# --------------------------------------------------------------------------- the synthetic corpus


def image_ids(n: int) -> Any:
    import numpy as np

    return np.array([f"img{i:07d}-{i * 2654435761 % 16 ** 10:010x}" for i in range(n)], dtype=object)


def write_corpus(root: Path, n: int, runs: int = 1, seed: int = 0, strings: bool = False) -> dict[str, Any]:
    """Write the corpus of ``n`` images through the store; ``runs`` parts per head x method partition
    (consecutive chunk ranges, as ``runs`` incremental analyses leave them). The same numbers whatever
    ``runs`` is. Text columns are categoricals, as ``dashboard.synthetic`` writes them, or with ``strings``
    plain text, as the engine writes them. Returns seconds, parts and bytes on disk."""
    import numpy as np
    import pandas as pd

    from semcontrib import corpus as cstore

    t = time.perf_counter()
    K = len(VOCABULARY)
    rng = np.random.default_rng(seed)
    ids = image_ids(n)
    cluster = rng.integers(0, 3, n)
    chunk = np.arange(n, dtype=np.int64) // CHUNK
    images = pd.DataFrame({"image_id": ids, "path": np.char.add(np.char.add("/synthetic/", ids.astype(str)), ".jpg"),
                           "sha256": "0" * 64, "width": 160, "height": 120, "status": "ok", "reason": "",
                           "original_mode": "RGB", "chunk": chunk})
    targets = {}
    for h, classes in HEADS.items():
        targets[h] = ((cluster + np.arange(n) % 2) % len(classes)).astype(np.int64)
        images[f"pred_{h}"] = np.asarray(classes, dtype=object)[targets[h]]
        images[f"prob_{h}"] = rng.uniform(0.4, 1.0, n)
    n_chunks = int(chunk[-1]) + 1 if n else 0
    bounds = [(int(r[0]), int(r[-1])) for r in np.array_split(np.arange(n_chunks), min(runs, n_chunks)) if len(r)]
    keys = {m: f"5e7a00000000{i + 16:04x}" for i, m in enumerate(METHODS)}
    parts: list[cstore.Part] = []
    for mi, m in enumerate(METHODS):
        for hi, (h, classes) in enumerate(HEADS.items()):
            prng = np.random.default_rng([seed, mi, hi])
            npix = prng.integers(0, 3, (n, K)) * prng.integers(500, 20000, (n, K))
            centre = np.stack([np.roll(np.linspace(-1, 1, K), c + hi + mi) for c in range(3)])[cluster]
            mean = prng.normal(centre, 0.6)
            pos = (np.abs(prng.normal(0, 1, (n, K))) + np.maximum(mean, 0)) * npix * 1e-3
            neg = (-np.abs(prng.normal(0, 1, (n, K))) + np.minimum(mean, 0)) * npix * 1e-3
            faith = np.tanh(prng.normal(0.5 - 0.3 * mi, 0.5, n))
            for a, b in bounds:
                lo, hi_ = a * CHUNK, min(n, (b + 1) * CHUNK)
                rows = slice(lo, hi_)
                own = pd.Index(ids[rows])
                cat = pd.Categorical.from_codes(np.arange(hi_ - lo), dtype=pd.CategoricalDtype(own))
                tgt = pd.Categorical.from_codes(targets[h][rows], dtype=pd.CategoricalDtype(pd.Index(classes)))
                s = (pos + neg)[rows]
                if strings:  # as the engine's tables writer types them
                    cat, tgt = ids[rows].astype(str), np.asarray(classes, dtype=object)[targets[h][rows]].astype(str)
                attributions = pd.DataFrame({
                    "image_id": cat, "target": tgt, "target_index": targets[h][rows],
                    "logit": prng.normal(size=hi_ - lo), "status": "ok",
                    "delta": prng.normal(0, 0.01, hi_ - lo) if m == "ig" else np.nan, "total": s.sum(axis=1),
                    "scale": np.nan, "unassigned_n": 0, "unassigned_sum": 0.0, "unassigned_pos": 0.0,
                    "unassigned_neg": 0.0, "lrp_ratio": np.nan, "faithfulness": faith[rows],
                    "deletion_auc": prng.beta(2, 5, hi_ - lo), "insertion_auc": prng.beta(5, 2, hi_ - lo),
                    "lerf_auc": prng.beta(5, 2, hi_ - lo), "random_auc": prng.beta(3, 3, hi_ - lo),
                    "validity_note": ""})
                parts.append(cstore.write_part(root, "attributions", h, m, attributions,
                                               key=keys[m], chunks=range(a, b + 1)))
                k = hi_ - lo
                contributions = pd.DataFrame({
                    "image_id": np.repeat(cat, K) if strings else pd.Categorical.from_codes(
                        np.repeat(np.arange(k), K), dtype=cat.dtype),
                    "target": np.repeat(tgt, K) if strings else pd.Categorical.from_codes(
                        np.repeat(targets[h][rows], K), dtype=tgt.dtype),
                    "target_index": np.repeat(targets[h][rows], K),
                    "region": np.tile(np.asarray(VOCABULARY), k) if strings else pd.Categorical.from_codes(
                        np.tile(np.arange(K), k), dtype=pd.CategoricalDtype(pd.Index(VOCABULARY))),
                    "region_index": np.tile(np.arange(K, dtype=np.int64), k),
                    "n_pixels": npix[rows].ravel().astype(np.int64), "sum": s.ravel(),
                    "pos_sum": pos[rows].ravel(), "neg_sum": neg[rows].ravel()})
                cstore.add_default_scores(contributions, K)
                parts.append(cstore.write_part(root, "contributions", h, m, contributions, key=keys[m],
                                               chunks=range(a, b + 1)))
            del npix, centre, mean, pos, neg
    manifest = cstore.make_manifest(
        model={"name": "synthetic", "key": "5e7a000000000000", "input_size": 224}, heads=HEADS,
        methods={m: {"params": {}, "key": keys[m], "notes": "synthetic", "level": "pixel"} for m in METHODS},
        regions={"name": "synthetic", "params": {}, "vocabulary": list(VOCABULARY), "key": "5e7a000000000001"},
        settings={}, extra={"synthetic": True, "targets": "predicted class per head", "batch_size": 8,
                            "chunk_size": CHUNK, "packages": {}})
    order = {(t, h, m): k for k, (t, h, m) in enumerate((t, h, m) for t in cstore.PARTITIONED for h in HEADS
                                                        for m in METHODS)}
    parts.sort(key=lambda q: (order[(q.table, q.head, q.method)], min(q.chunks, default=0)))  # as the pipeline
    cstore.publish(root, images, parts, manifest)
    return {"seconds": time.perf_counter() - t, "parts": len(parts), "bytes": disk_bytes(root),
            "rows_contributions": n * len(HEADS) * len(METHODS) * K}


# --------------------------------------------------------------------------- phases (each in its own process)


def phase_corpus(p: dict[str, Any]) -> dict[str, Any]:
    return {**write_corpus(Path(p["root"]), p["n"], strings=not p.get("categorical")), "peak_mb": peak_mb(),
            "text": "categorical" if p.get("categorical") else "strings"}


def phase_plan(p: dict[str, Any]) -> dict[str, Any]:
    """``read_inputs`` + ``make_plan`` of the engine in ``p["tree"]`` on ``p["folder"]`` into ``p["root"]``."""
    t0 = time.perf_counter()
    sys.path.insert(0, p["tree"])
    from semcontrib.pipeline import make_plan, read_inputs

    t1, c1 = time.perf_counter(), time.process_time()
    entries = read_inputs(Path(p["folder"]))
    t2 = time.perf_counter()
    plan = make_plan(Path(p["root"]), entries, CHUNK)
    t3, c3 = time.perf_counter(), time.process_time()
    return {"engine": sys.modules["semcontrib.pipeline"].__file__, "inputs": len(entries),
            "new_images": plan.new_images, "import_s": t1 - t0, "list_s": t2 - t1,
            "plan_s": t3 - t2, "run_s": t3 - t1, "run_cpu_s": c3 - c1, "cpu_s": time.process_time(),
            "peak_mb": peak_mb()}


def phase_open(p: dict[str, Any]) -> dict[str, Any]:
    from semcontrib.corpus import Corpus

    t = time.perf_counter()
    c = Corpus.open(p["root"])
    open_s = time.perf_counter() - t
    eager = "contributions" in vars(c)  # an engine before the lazy reader read every table on open
    return {"open_s": open_s, "rows": len(c.contributions) + len(c.attributions) if eager else None,
            "peak_mb": peak_mb()}


def _selection(n: int, size: int) -> Any:
    import numpy as np

    return np.sort(np.random.default_rng(7).choice(n, size=min(n, size), replace=False))


def _timed(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    """(median ms, last result) of ``repeat`` calls."""
    import statistics

    ms, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ms.append((time.perf_counter() - t) * 1000)
    return float(statistics.median(ms)), out


def _view_figures(matrix: Any, frame: Any, export: Any, xy: Any) -> dict[str, Any]:
    """Filter, lasso, sort and export timings on one view: ``frame`` is the ranked table's frame,
    ``export(ids)`` writes the export of a selection and returns its bytes, ``xy`` the shown layout."""
    import numpy as np

    from semcontrib.dashboard import views

    bounds = dict(zip(matrix.columns, views.slider_bounds(matrix.values).tolist()))
    lo, hi = bounds["sky"]
    ranges = views.ranges_from_sliders([{"column": "sky"}], [[lo, lo + (hi - lo) * 0.5]], bounds)
    filter_ms, visible = _timed(lambda: views.filter_mask(matrix, ranges))
    everyone = matrix.valid
    cx, cy = np.quantile(xy[:, 0], [0.0, 0.45]), np.quantile(xy[:, 1], [0.0, 1.0])
    polygon = {"lasso": {"x": [cx[0], cx[1], cx[1], cx[0]], "y": [cy[0], cy[0], cy[1], cy[1]]}}

    def lasso() -> Any:
        members = views.lasso_mask(polygon, xy, everyone)
        return views.add_selection([], "a fifth", members), int(members.sum())

    lasso_ms, (_, lasso_n) = _timed(lasso)
    sorts = {}
    for col, order in (("sky", "desc"), ("image_id", "asc"), ("pred_landscape", "desc"), ("faithfulness", "asc")):
        if col in frame.columns:
            sorts[col] = _timed(lambda c=col, o=order: views.table_order(frame, everyone, None,
                                                                          [{"colId": c, "sort": o}]))[0]
    sel = matrix.ids[_selection(matrix.n, 100_000)]
    steps = export([str(i) for i in sel])
    return {"filter_ms": filter_ms, "filtered": int(visible.sum()), "lasso_ms": lasso_ms, "lasso_images": lasso_n,
            "sort_ms": max(sorts.values()), "sort_ms_by_column": sorts,
            "export_s": steps["table_s"] + steps["engine_csv_s"],
            "export_parquet_s": steps["table_s"] + steps["parquet_s"], "export_steps": steps,
            "export_images": len(sel), "export_bytes": steps["bytes"]}


def _export_steps(table: Any, t0: float) -> dict[str, Any]:
    """The export's steps after the table (started at ``t0``): the CSV as the engine under test writes it
    (``semcontrib.export.csv_bytes``: pyarrow.csv, text neutralised in Arrow; an engine without it:
    ``spreadsheet_safe`` + pandas ``to_csv``), then, as the baseline in the same run, ``spreadsheet_safe``
    + pandas ``to_csv`` and Parquet."""
    import io

    from semcontrib.export import spreadsheet_safe

    try:
        from semcontrib.export import csv_bytes
    except ImportError:  # an engine before the pyarrow CSV
        csv_bytes = None
    t1 = time.perf_counter()
    arrow_bytes = len(csv_bytes(table)) if csv_bytes is not None else 0
    t2 = time.perf_counter()
    safe = spreadsheet_safe(table)
    t3 = time.perf_counter()
    pandas_bytes = len(safe.to_csv(index=False).encode())
    t4 = time.perf_counter()
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    t5 = time.perf_counter()
    pandas_s = (t3 - t2) + (t4 - t3)
    return {"bytes": arrow_bytes or pandas_bytes, "table_s": t1 - t0,
            "csv_writer": "pyarrow.csv" if csv_bytes is not None else "pandas to_csv",
            "engine_csv_s": (t2 - t1) if csv_bytes is not None else pandas_s, "safe_s": t3 - t2, "csv_s": t4 - t3,
            "pandas_csv_s": pandas_s, "pandas_bytes": pandas_bytes, "parquet_s": t5 - t4,
            "parquet_bytes": len(buf.getvalue()), "rows": len(table)}


def phase_engine(p: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's reader (``CorpusQuery``, on ``Corpus.open``) on one view."""
    from semcontrib.dashboard.query import CorpusQuery
    from semcontrib.dashboard.records import View

    t = time.perf_counter()
    q = CorpusQuery(p["root"])
    open_s = time.perf_counter() - t
    view = View(*VIEW)
    t = time.perf_counter()
    matrix = q.score_matrix(view)
    spec, X = q.embedding_spec(view, "tsne", {})
    xy = q.embedding_by_key(q.quick_embedding(spec, X))
    frame = q.table_frame(view)
    first_view_s = time.perf_counter() - t

    def export(ids: list[str]) -> dict[str, float]:
        t = time.perf_counter()
        table = q.contribution_table(view, ids)
        return _export_steps(table, t)

    out = _view_figures(matrix, frame, export, xy)
    return {"open_s": open_s, "first_view_s": first_view_s, **out, "peak_mb": peak_mb()}


def read_view(root: Path, head: str, method: str) -> tuple[Any, Any, Any]:
    """(images of status ok with predictions and probabilities, the view's long raw table, attributions'
    validity columns) read lazily: only the columns of the (head, method) partition's parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from semcontrib import corpus as cstore

    manifest = cstore.read_manifest(root)
    assert manifest is not None
    parts = [q for q in cstore.manifest_parts(manifest, root / cstore.MANIFEST) if q.head == head
             and q.method == method]
    cols = ["image_id", "status", *[f"{k}_{h}" for h in manifest["heads"] for k in ("pred", "prob")]]
    images = pq.read_table(root / "images.parquet", columns=cols).to_pandas()
    images = images[images["status"] == "ok"].reset_index(drop=True)

    def table(name: str, columns: list[str]) -> Any:
        got = [pq.read_table(root / q.file, columns=columns) for q in parts if q.table == name]
        return pa.concat_tables(got, promote_options="permissive").to_pandas()

    long = table("contributions", ["image_id", "target", "region", "region_index", "n_pixels", "sum", "pos_sum",
                                   "neg_sum"])
    long["head"], long["method"] = head, method
    validity = table("attributions", ["image_id", "faithfulness", "deletion_auc", "insertion_auc"])
    return images, long, validity


def phase_view(p: dict[str, Any]) -> dict[str, Any]:
    """The view functions on a view read lazily (what a lazy corpus would give)."""
    import numpy as np
    import pandas as pd

    from semcontrib import corpus as cstore
    from semcontrib.dashboard import embedding, views

    root = Path(p["root"])
    head, method, normalisation, basis = VIEW
    t = time.perf_counter()
    images, long, validity = read_view(root, head, method)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    ids = images["image_id"].astype(str).to_numpy(dtype=object)
    wide = cstore.score_table(long, list(VOCABULARY), normalisation, basis, wide=True)
    matrix = views.score_matrix(wide, ids, VOCABULARY)
    xy = embedding.pca_2d(views.embedding_input(matrix, np.ones(len(matrix.columns))))
    data: dict[str, Any] = {"index": np.arange(len(ids)), "image_id": ids}
    for h in HEADS:
        data[f"pred_{h}"] = images[f"pred_{h}"].fillna("").astype(str).to_numpy(dtype=object)
        data[f"prob_{h}"] = np.round(images[f"prob_{h}"].to_numpy(np.float64), 3)
    for j, c in enumerate(matrix.columns):
        data[c] = np.round(matrix.values[:, j] * 100, 2)
    v = validity.drop_duplicates("image_id").set_index("image_id").reindex(ids)
    for c in ("faithfulness", "deletion_auc", "insertion_auc"):
        data[c] = np.round(v[c].to_numpy(np.float64), 3)
    frame = pd.DataFrame(data)
    first_view_s = time.perf_counter() - t

    def export(sel: list[str]) -> dict[str, float]:
        t = time.perf_counter()
        table = cstore.score_table(long[long["image_id"].isin(sel)], list(VOCABULARY), normalisation, basis)
        return _export_steps(table, t)

    out = _view_figures(matrix, frame, export, xy)
    del wide, frame
    gc.collect()
    return {"read_s": read_s, "first_view_s": first_view_s, "open_s": read_s + first_view_s, **out,
            "columns_s": _columns_view(root, head, method, len(ids)), "peak_mb": peak_mb()}


def _columns_view(root: Path, head: str, method: str, n: int) -> float:
    """Seconds to build the view's N x K scores from the partition's four raw columns as NumPy arrays,
    with no text column and no sort (its rows are stored image-major in chunk order, regions in
    vocabulary order): what a column-wise lazy corpus could do."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from semcontrib import corpus as cstore
    from semcontrib.contributions import normalise

    t = time.perf_counter()
    manifest = cstore.read_manifest(root)
    assert manifest is not None
    files = [root / q.file for q in cstore.manifest_parts(manifest, root / cstore.MANIFEST)
             if q.table == "contributions" and q.head == head and q.method == method]
    cols = ("sum", "pos_sum", "neg_sum", "n_pixels")
    table = pa.concat_tables([pq.read_table(f, columns=list(cols)) for f in files])
    raw = [table.column(c).to_numpy().astype(np.float64).reshape(n, len(VOCABULARY)) for c in cols]
    normalise(*raw)
    return time.perf_counter() - t


def phase_dashboard(p: dict[str, Any]) -> dict[str, Any]:
    """``create_app`` and every callback the page calls for the head selector on first load, then filter
    updates through the real callbacks (over HTTP, Flask's test client), and the server's peak memory."""
    import statistics

    sys.path.insert(0, str(HERE))
    from bench_dashboard import RANGE_PROP, _fire, _sliders

    from semcontrib.dashboard import ids as I
    from semcontrib.dashboard.app import create_app
    from semcontrib.dashboard.callback_client import CallbackClient

    t = time.perf_counter()
    app = create_app(p["root"])
    create_s = time.perf_counter() - t
    c = CallbackClient(app)
    for cid, prop, value in [(I.HEAD, "value", VIEW[0]), (I.METHOD, "value", VIEW[1]),
                             (I.NORMALISATION, "value", VIEW[2]), (I.BASIS, "value", VIEW[3]),
                             (I.ALGORITHM, "value", "tsne"), (I.HIGHLIGHT, "value", ["coast"]),
                             (I.FILTERED_MODE, "value", "dim"), (I.COLOUR_BY, "value", "selection"),
                             (I.FAITH_RANGE, "value", [-1, 1]), (I.SELECTIONS, "data", []),
                             (I.TABS, "value", "statistics"), (I.COMPARE, "value", []),
                             (I.DETAIL_SORT, "value", ""), (I.DETAIL_ORDER, "value", "desc"),
                             (I.DETAIL_PAGE, "data", 0)]:
        c.set(cid, prop, value)
    c.set_all(I.WEIGHT, "value", [({"type": I.WEIGHT, "region": r}, 1) for r in VOCABULARY])
    first_ms, errors = 0.0, []
    for key in c.triggered_by(f"{I.HEAD}.value"):
        try:
            first_ms += c.call(key, [f"{I.HEAD}.value"]).ms
        except (RuntimeError, KeyError, ValueError) as exc:
            errors.append(f"{key[:60]}: {str(exc)[:120]}")
    sliders = _sliders(c.values.get((I.FILTER_PANEL, "children")))
    c.set_all(I.RANGE, "value", sliders)
    filter_ms: list[float] = []
    sky = [k for k, (sid, _) in enumerate(sliders) if sid.get("column") == "sky"]
    for k in range(3 if sky else 0):
        lo, hi = sliders[sky[0]][1]
        moved = list(sliders)
        moved[sky[0]] = (sliders[sky[0]][0], [lo, lo + (hi - lo) * (0.5 if k % 2 == 0 else 0.6)])
        c.set_all(I.RANGE, "value", moved)
        filter_ms.append(_fire(c, RANGE_PROP)[0])
    return {"create_app_s": create_s, "first_callbacks_s": first_ms / 1000,
            "first_render_s": create_s + first_ms / 1000, "callback_errors": errors,
            "filter_ms": float(statistics.median(filter_ms)) if filter_ms else None, "peak_mb": peak_mb()}


def _read_all(root: Path) -> tuple[float, int]:
    """Seconds to read every table part of a corpus (pyarrow, all columns, one part at a time), parts."""
    import pyarrow.parquet as pq

    from semcontrib import corpus as cstore

    manifest = cstore.read_manifest(root)
    assert manifest is not None
    parts = cstore.manifest_parts(manifest, root / cstore.MANIFEST)
    t = time.perf_counter()
    for q in parts:
        pq.read_table(root / q.file)
    return time.perf_counter() - t, len(parts)


def _partition(root: Path, head: str, method: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from semcontrib import corpus as cstore

    manifest = cstore.read_manifest(root)
    assert manifest is not None
    got = [pq.read_table(root / q.file) for q in cstore.manifest_parts(manifest, root / cstore.MANIFEST)
           if q.table == "contributions" and q.head == head and q.method == method]
    t = pa.concat_tables(got, promote_options="permissive")
    for k, f in enumerate(t.schema):  # categories as their values: parts may hold different dictionaries
        if pa.types.is_dictionary(f.type):
            t = t.set_column(k, f.name, t.column(k).cast(f.type.value_type))
    return t.combine_chunks()


def phase_compact(p: dict[str, Any]) -> dict[str, Any]:
    from semcontrib import corpus as cstore

    work, n, runs = Path(p["work"]), p["n"], p["runs"]
    once, grown = work / "compact_once", work / "compact_grown"
    for d in (once, grown):
        shutil.rmtree(d, ignore_errors=True)
    w_once = write_corpus(once, n, 1, strings=True)
    w_grown = write_corpus(grown, n, runs, strings=True)
    read_once, parts_once = min(_read_all(once) for _ in range(2))
    read_grown, parts_grown = min(_read_all(grown) for _ in range(2))
    before = _partition(grown, *VIEW[:2])
    bytes_grown = disk_bytes(grown)
    t = time.perf_counter()
    report = cstore.compact(grown)
    compact_s = time.perf_counter() - t
    read_after, parts_after = min(_read_all(grown) for _ in range(2))
    equal = before.equals(_partition(grown, *VIEW[:2]))
    out = {"images": n, "runs": runs, "parts_once": parts_once, "parts_grown": parts_grown,
           "parts_compacted": parts_after, "read_once_s": read_once, "read_grown_s": read_grown,
           "read_compacted_s": read_after, "compact_s": compact_s, "equal": equal,
           "compacted_read_ratio": read_after / read_once, "bytes_once": w_once["bytes"],
           "bytes_grown": bytes_grown, "bytes_compacted": disk_bytes(grown), "write_grown_s": w_grown["seconds"],
           "report": [report.parts_before, report.parts_after]}
    if p["open"]:
        from semcontrib.corpus import Corpus

        for name, root in (("once", once), ("compacted", grown)):
            t = time.perf_counter()
            c = Corpus.open(root)
            len(c.contributions) + len(c.attributions)  # every table into pandas (what Corpus.open did before)
            out[f"open_{name}_s"] = time.perf_counter() - t
            del c
            gc.collect()
    out["peak_mb"] = peak_mb()
    return out


def phase_embed(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from scipy.spatial import cKDTree

    from semcontrib import corpus as cstore
    from semcontrib.dashboard import embedding, views

    head, method, normalisation, basis = VIEW
    images, long, _ = read_view(Path(p["root"]), head, method)
    ids = images["image_id"].astype(str).to_numpy(dtype=object)
    wide = cstore.score_table(long, list(VOCABULARY), normalisation, basis, wide=True)
    del long
    matrix = views.score_matrix(wide, ids, VOCABULARY)
    X = views.embedding_input(matrix, np.ones(len(matrix.columns)))
    n = len(X)
    rng = np.random.default_rng(0)  # as views.embed draws the fitted rows
    fit = np.sort(rng.choice(n, size=min(n, p["fit"]), replace=False))
    rest = np.setdiff1d(np.arange(n), fit)
    t = time.perf_counter()
    model = embedding.fit_tsne(X[fit] + rng.normal(0, 1e-6, (len(fit), X.shape[1])), 0, lambda _msg: None)
    fit_s = time.perf_counter() - t
    timed = rest if len(rest) <= p["place"] else np.sort(rng.choice(rest, size=p["place"], replace=False))
    t = time.perf_counter()
    placed = embedding.place(model, X[timed])
    place_timed_s = time.perf_counter() - t
    place_s = place_timed_s * len(rest) / max(1, len(timed))
    Y = np.zeros((n, 2))
    Y[fit] = np.asarray(model)
    Y[timed] = placed
    t = time.perf_counter()
    tree = cKDTree(Y)
    tree_s = time.perf_counter() - t
    probes = rng.uniform(Y.min(axis=0), Y.max(axis=0), (1000, 2))
    t = time.perf_counter()
    for q in probes:
        tree.query(q)
    hover_ms = (time.perf_counter() - t) * 1000 / len(probes)
    return {"images": n, "fit_images": len(fit), "fit_s": fit_s, "rest": len(rest), "placed_timed": len(timed),
            "place_ms_per_image": place_timed_s * 1000 / max(1, len(timed)), "place_s": place_s,
            "total_s": fit_s + place_s, "extrapolated": len(timed) < len(rest), "hover_tree_s": tree_s,
            "hover_ms": hover_ms, "peak_mb": peak_mb()}


PHASE_FUNCTIONS = {"corpus": phase_corpus, "plan": phase_plan, "open": phase_open, "engine": phase_engine,
                   "view": phase_view, "dashboard": phase_dashboard, "compact": phase_compact, "embed": phase_embed}


# --------------------------------------------------------------------------- the driver


def run_phase(name: str, params: dict[str, Any], limit_mb: float, cwd: Path = REPO) -> dict[str, Any]:
    """Run one phase in a fresh process; its JSON result with ``wall_s`` (process wall time, Python start
    included) and ``watch_peak_mb`` (largest resident memory seen), or ``{"failed": why}``."""
    import psutil

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--phase", name,
                                 "--params", json.dumps(params)], stdout=out, stderr=err, env=env, cwd=cwd)
        ps, seen, killed = psutil.Process(proc.pid), 0.0, False
        while proc.poll() is None:
            try:
                rss = sum(q.memory_info().rss for q in [ps, *ps.children(recursive=True)]) / 2**20
            except psutil.Error:
                rss = 0.0
            seen = max(seen, rss)
            if rss > limit_mb:
                for q in [*ps.children(recursive=True), ps]:
                    try:
                        q.kill()
                    except psutil.Error:
                        pass
                killed = True
            time.sleep(0.1)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        lines = out.read().decode(errors="replace").strip().splitlines()
        tail = err.read().decode(errors="replace")[-1500:]
    if killed:
        return {"failed": f"over the memory limit ({limit_mb:.0f} MB) after {wall:.0f} s", "wall_s": wall,
                "watch_peak_mb": seen, "load_avg": os.getloadavg()[0]}
    if proc.returncode != 0 or not lines:
        return {"failed": f"exit {proc.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}",
                "wall_s": wall, "watch_peak_mb": seen, "stderr": tail}
    return {**json.loads(lines[-1]), "wall_s": wall, "watch_peak_mb": seen, "load_avg": os.getloadavg()[0]}


def measure_plan(args: argparse.Namespace, work: Path, limit_mb: float) -> dict[str, Any]:
    """Planning at ``--n`` with this engine, and at ``--baseline-n`` with both engines."""
    from common import baseline_tree, make_files

    res: dict[str, Any] = {}
    sizes = {"n": args.n, "baseline_n": min(args.n, args.baseline_n)}
    old = baseline_tree(args.baseline_ref, work / "baseline_tree") if args.baseline_ref else None
    engines = [("new", REPO)] + ([("old", old)] if old else [])
    folders: dict[int, Path] = {}
    for size in sorted(set(sizes.values())):
        folders[size] = work / f"inputs{size}"
        res[f"make_files_{size}_s"] = make_files(folders[size], 0, size)
    for label, size in sizes.items():
        for eng, tree in engines:
            if label == "n" and eng == "old" and args.n != sizes["baseline_n"]:
                continue
            if label == "baseline_n" and args.n == sizes["baseline_n"] and f"n_{eng}" in res:
                res[f"baseline_n_{eng}"] = res[f"n_{eng}"]
                continue
            folder = work / f"inputs_{label}_{eng}"
            shutil.copytree(folders[size], folder, copy_function=os.link)
            root = work / f"plan_{label}_{eng}"
            params = {"tree": str(tree), "folder": str(folder), "root": str(root)}
            r = {"first": run_phase("plan", params, limit_mb, cwd=tree)}
            r["rerun"] = run_phase("plan", params, limit_mb, cwd=tree)
            add = max(1, size // 100)
            make_files(folder, 10**8 - size, add)  # new names, after every earlier one in listing order
            r["add"] = run_phase("plan", params, limit_mb, cwd=tree)
            r["add"]["added"] = add
            res[f"{label}_{eng}"] = r
            shutil.rmtree(folder, ignore_errors=True)
    for size in folders.values():
        shutil.rmtree(size, ignore_errors=True)
    return res


def summary_rows(res: dict[str, Any], args: Namespace) -> list[tuple[str, str, str, str, str]]:
    """(figure, goal, measured, met, baseline and ratio) rows."""
    rows: list[tuple[str, str, str, str, str]] = []

    def row(label: str, key: str | None, value: float | None, shown: str, base: str = "") -> None:
        goal, met = "", ""
        if key in GOALS:
            goal = GOALS[key][0]
            met = "n/a" if value is None else ("yes" if GOALS[key][1](value) else "NO")
        rows.append((label, goal, shown, met, base))

    def failed(label: str, key: str | None, r: dict[str, Any]) -> None:
        row(label, key, None, f"failed: {r['failed']}")
        rows[-1] = (*rows[-1][:3], "NO", "")

    def cpu(r: dict[str, Any]) -> str:
        """CPU seconds of the process and of listing + planning, where recorded."""
        return f"; CPU {r['cpu_s']:.1f} s, {r['run_cpu_s']:.1f} s in the run" if "cpu_s" in r else ""

    def load(r: dict[str, Any]) -> str:
        return f"; load average {r['load_avg']:.1f}" if "load_avg" in r else ""

    n = args.n
    c = res.get("corpus")
    if c:
        if "failed" in c:
            failed("synthetic corpus", None, c)
        else:
            row("synthetic corpus written through the store", None, None,
                f"{c['seconds']:.0f} s, {c['parts']} parts, {c['bytes'] / 2**20:.0f} MiB on disk "
                f"({c['bytes'] / n / 1024:.2f} KiB/image), peak {c['peak_mb']:.0f} MB")
    pl = res.get("plan")
    if pl:
        new, old = pl.get("n_new", {}), pl.get("baseline_n_old")
        same = pl.get("baseline_n_new")
        bn = min(n, args.baseline_n)
        first, rerun, add = new.get("first", {}), new.get("rerun", {}), new.get("add", {})
        if any("failed" in r for r in (first, rerun, add)):
            bad = next(r for r in (first, rerun, add) if "failed" in r)
            failed(f"planning at {n:,} inputs", "plan_rerun_wall_s", bad)
        else:
            base = ""
            if old and same and not any("failed" in old[k] for k in old):
                base = (f"old engine at {bn:,}: {old['rerun']['wall_s']:.1f} s wall ({old['rerun']['run_s']:.1f} s "
                        f"in run), {old['rerun']['peak_mb']:.0f} MB; new at {bn:,}: {same['rerun']['wall_s']:.1f} s "
                        f"({same['rerun']['run_s']:.2f} s): {old['rerun']['run_s'] / same['rerun']['run_s']:.1f}x "
                        "less time in the run")
            row(f"rerun with nothing to do, {n:,} inputs: listing + planning, wall incl. Python and imports",
                "plan_rerun_wall_s", rerun["wall_s"],
                f"{rerun['wall_s']:.1f} s ({rerun['list_s']:.1f} s listing + {rerun['plan_s']:.1f} s planning; "
                f"import {rerun['import_s']:.1f} s{cpu(rerun)}{load(rerun)})", base)
            row("  its peak memory", "plan_rerun_peak_mb", rerun["peak_mb"], f"{rerun['peak_mb']:.0f} MB",
                f"old at {bn:,}: {old['rerun']['peak_mb']:.0f} MB" if old and "failed" not in old["rerun"] else "")
            share = add["run_s"] / first["run_s"]
            base = ""
            if old and "failed" not in old["add"] and "failed" not in old["first"]:
                base = f"old at {bn:,}: {old['add']['run_s'] / old['first']['run_s'] * 100:.1f} %"
            row(f"adding 1 % ({add['added']:,} files): planning time / the first run's", "plan_add_share", share,
                f"{share * 100:.1f} % ({add['run_s']:.1f} s vs {first['run_s']:.1f} s; {add['new_images']:,} new"
                f"{cpu(add)})",
                base)
            row("  first planning run (hashes every file)", None, None,
                f"{first['run_s']:.1f} s ({first['run_s'] / n * 1e6:.0f} us per input), peak {first['peak_mb']:.0f} MB",
                f"old at {bn:,}: {old['first']['run_s']:.1f} s" if old and "failed" not in old["first"] else "")
    def was(r: dict[str, Any] | None, text: Any) -> str:
        """The baseline reader's figure (``--reader-ref``, measured in the same run), or why there is none."""
        if not r:
            return ""
        if "failed" in r:
            return f"before ({res.get('reader_ref')}): {r['failed']}"
        try:
            return f"before ({res.get('reader_ref')}): {text(r)}"
        except (KeyError, TypeError):
            return ""

    o, ob = res.get("open"), res.get("open_before")
    if o:
        if "failed" in o:
            failed("Corpus.open", None, o)
        else:
            row("Corpus.open (manifest, images table, parts' footers; tables read on demand)", None, None,
                f"{o['open_s']:.1f} s, peak {o['peak_mb']:.0f} MB",
                was(ob, lambda b: f"{b['open_s']:.1f} s, {b['rows']:,} rows into pandas, peak {b['peak_mb']:.0f} MB"))
    v = res.get("view")
    e, eb = res.get("engine"), res.get("engine_before")
    d, db = res.get("dashboard"), res.get("dashboard_before")
    if d:
        if "failed" in d:
            failed("dashboard first render (create_app + first callbacks)", "first_render_s", d)
            rows.append(("dashboard server RSS", GOALS["server_rss_mb"][0],
                         f">= {d['watch_peak_mb']:.0f} MB when stopped", "NO", ""))
        else:
            note = f"; {len(d['callback_errors'])} callbacks failed" if d["callback_errors"] else ""
            row("dashboard first render (create_app + the head's callbacks)", "first_render_s",
                d["first_render_s"], f"{d['first_render_s']:.1f} s (create_app {d['create_app_s']:.1f} s){note}",
                was(db, lambda b: f"{b['first_render_s']:.1f} s (create_app {b['create_app_s']:.1f} s)"))
            row("dashboard server RSS (peak)", "server_rss_mb", d["peak_mb"], f"{d['peak_mb']:.0f} MB",
                was(db, lambda b: f"{b['peak_mb']:.0f} MB"))
            if d["filter_ms"] is not None:
                row("filter update through the callbacks", "filter_ms", d["filter_ms"], f"{d['filter_ms']:.0f} ms",
                    was(db, lambda b: f"{b['filter_ms']:.0f} ms"))
    for label, r, b in (("engine (CorpusQuery)", e, eb), ("lazy view read by hand (one head x method)", v, None)):
        if not r:
            continue
        if "failed" in r:
            failed(f"{label}: open + first view", None, r)
            continue
        ratio = ""
        if r is v and e and "failed" not in e:
            ratio = f"engine {e['open_s'] + e['first_view_s']:.1f} s: {(e['open_s'] + e['first_view_s']) / (v['open_s'] + v['first_view_s']):.1f}x"  # noqa: E501
        elif r is v and e:
            ratio = "engine: over the memory limit"
        row(f"{label}: open + first view (score matrix, layout, table frame)", None, None,
            f"{r['open_s']:.1f} s + {r['first_view_s']:.1f} s, peak {r['peak_mb']:.0f} MB",
            ratio or was(b, lambda x: f"{x['open_s']:.1f} s + {x['first_view_s']:.1f} s, peak {x['peak_mb']:.0f} MB"))
        row(f"  {label}: filter (one region range)", "filter_ms", r["filter_ms"], f"{r['filter_ms']:.1f} ms",
            was(b, lambda x: f"{x['filter_ms']:.1f} ms"))
        row(f"  {label}: lasso (polygon on the server + selection)", "lasso_ms", r["lasso_ms"],
            f"{r['lasso_ms']:.1f} ms ({r['lasso_images']:,} images)", was(b, lambda x: f"{x['lasso_ms']:.1f} ms"))
        row(f"  {label}: table sort, slowest column", "sort_ms", r["sort_ms"],
            f"{r['sort_ms']:.0f} ms (" + ", ".join(f"{k} {x:.0f}" for k, x in r["sort_ms_by_column"].items()) + ")",
            was(b, lambda x: f"{x['sort_ms']:.0f} ms"))
        st = r.get("export_steps")
        steps = ""
        if st and "engine_csv_s" in st:
            steps = f" (table {st['table_s']:.1f} s, CSV by {st['csv_writer']} {st['engine_csv_s']:.1f} s)"
        row(f"  {label}: export of a {r['export_images']:,}-image selection (CSV, long)", "export_s",
            r["export_s"], f"{r['export_s']:.2f} s, {r['export_bytes'] / 2**20:.0f} MiB{steps}",
            was(b, lambda x: f"{x['export_s']:.2f} s"))
        if st and "pandas_csv_s" in st:
            row(f"  {label}:   its CSV as spreadsheet_safe + pandas to_csv instead", None, None,
                f"{st['pandas_csv_s']:.2f} s (spreadsheet-safe text {st['safe_s']:.1f} s, to_csv {st['csv_s']:.1f} s)",
                f"the engine's CSV {st['engine_csv_s']:.2f} s: {st['pandas_csv_s'] / st['engine_csv_s']:.1f}x faster")
        if st:
            row(f"  {label}: the same export as Parquet", "export_s", r["export_parquet_s"],
                f"{r['export_parquet_s']:.2f} s, {st['parquet_bytes'] / 2**20:.0f} MiB")
        if "columns_s" in r:
            row(f"  {label}: the view's scores from four raw columns (NumPy, no sort)", None, None,
                f"{r['columns_s']:.1f} s", f"score_table + score_matrix: {r['first_view_s']:.1f} s")
    cp = res.get("compact")
    if cp:
        if "failed" in cp:
            failed("compaction", "compacted_read_ratio", cp)
        else:
            row(f"reading every part after compaction, {cp['images']:,} images grown by {cp['runs']} runs",
                "compacted_read_ratio", cp["compacted_read_ratio"],
                f"{cp['read_compacted_s']:.2f} s ({cp['parts_compacted']} parts) = {cp['compacted_read_ratio']:.2f}x "
                f"written once ({cp['read_once_s']:.2f} s, {cp['parts_once']} parts)",
                f"before compaction {cp['read_grown_s']:.2f} s ({cp['parts_grown']} parts): "
                f"{cp['read_grown_s'] / cp['read_compacted_s']:.1f}x slower")
            row("  semcontrib compact (compact())", None, None,
                f"{cp['compact_s']:.1f} s, tables equal: {cp['equal']}; on disk {cp['bytes_grown'] / 2**20:.0f} -> "
                f"{cp['bytes_compacted'] / 2**20:.0f} MiB (written once {cp['bytes_once'] / 2**20:.0f} MiB)")
            if "open_once_s" in cp:
                row("  Corpus.open + every table into pandas, written once / compacted", None, None,
                    f"{cp['open_once_s']:.1f} s / {cp['open_compacted_s']:.1f} s")
    em = res.get("embed")
    if em:
        if "failed" in em:
            failed("embedding", None, em)
        else:
            scaled = f", timed on {em['placed_timed']:,} and scaled" if em["extrapolated"] else ""
            row(f"t-SNE at {em['images']:,}: fit {em['fit_images']:,} + transform {em['rest']:,}", None, None,
                f"{em['total_s'] / 60:.1f} min (fit {em['fit_s']:.0f} s; transform {em['place_ms_per_image']:.2f} ms "
                f"per image{scaled}), peak {em['peak_mb']:.0f} MB")
            row("  hover in density mode: nearest point (cKDTree)", None, None,
                f"{em['hover_ms']:.3f} ms per lookup (tree built in {em['hover_tree_s']:.2f} s)")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="images (default 1,000,000)")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {','.join(PHASES)}")
    ap.add_argument("--baseline-ref", default="1572264",
                    help="git commit of the engine before vectorised planning ('' for none)")
    ap.add_argument("--baseline-n", type=int, default=100_000, help="inputs planned by both engines")
    ap.add_argument("--reader-ref", default="35227e4",
                    help="git commit of the reader before the lazy corpus, run as the baseline of the open, engine "
                         "and dashboard phases ('' for none)")
    ap.add_argument("--reader-baseline-n", type=int, default=200_000,
                    help="the baseline reader runs only up to this many images (it reads every table into pandas)")
    ap.add_argument("--compact-n", type=int, default=200_000, help="images of the compaction corpora")
    ap.add_argument("--compact-runs", type=int, default=100, help="incremental parts per partition")
    ap.add_argument("--embed-fit", type=int, default=100_000, help="images the t-SNE fits (the dashboard's)")
    ap.add_argument("--embed-place", type=int, default=100_000, help="placed images timed (scaled to the rest)")
    ap.add_argument("--mem-limit-gb", type=float, default=10.0, help="a phase above this is stopped")
    ap.add_argument("--work", help="work folder (default: a temporary one, removed)")
    ap.add_argument("--categorical", action="store_true",
                    help="write the corpus's text columns as categoricals (as dashboard.synthetic does; a Parquet "
                         "dictionary of every image id per part, slow to read back) instead of plain text, as the "
                         "engine writes them")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--from-json", help="print the summary of a result saved with --json, measure nothing")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        params = json.loads(args.params)
        if params.get("tree"):  # the engine of another tree (a baseline), imported from there
            sys.path.insert(0, params["tree"])
        print(json.dumps(PHASE_FUNCTIONS[args.phase](params)))
        return 0
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
        print_summary(res, Namespace(n=res["n"], baseline_n=res.get("baseline_n", args.baseline_n),
                                     mem_limit_gb=res.get("mem_limit_gb", args.mem_limit_gb)))
        return 0
    if args.n < 1:
        raise SystemExit("--n must be at least 1")
    phases = [x for x in args.phases.split(",") if x]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases {sorted(unknown)}; phases are {','.join(PHASES)}")
    limit = args.mem_limit_gb * 1024
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_million_"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "corpus"
    res: dict[str, Any] = {"n": args.n, "heads": len(HEADS), "methods": len(METHODS), "regions": len(VOCABULARY),
                           "cores": os.cpu_count(), "baseline_n": args.baseline_n, "mem_limit_gb": args.mem_limit_gb}
    sys.path.insert(0, str(HERE))
    try:
        needs_corpus = {"open", "engine", "view", "dashboard", "embed"} & set(phases)
        if "corpus" in phases or (needs_corpus and not (root / "manifest.json").is_file()):
            shutil.rmtree(root, ignore_errors=True)
            res["corpus"] = run_phase("corpus", {"root": str(root), "n": args.n, "categorical": args.categorical},
                                      limit)
        for name in phases:
            t = time.perf_counter()
            if name == "plan":
                res["plan"] = measure_plan(args, work, limit)
            elif name == "compact":
                res["compact"] = run_phase("compact", {"work": str(work), "n": min(args.n, args.compact_n),
                                                       "runs": args.compact_runs,
                                                       "open": min(args.n, args.compact_n) <= 300_000}, limit)
            elif name == "embed":
                res["embed"] = run_phase("embed", {"root": str(root), "fit": args.embed_fit,
                                                   "place": args.embed_place}, limit)
            elif name != "corpus":
                res[name] = run_phase(name, {"root": str(root), "n": args.n}, limit)
                if name in ("open", "engine", "dashboard") and args.reader_ref and args.n <= args.reader_baseline_n:
                    tree = work / "reader_tree"
                    if not tree.is_dir():
                        from common import baseline_tree

                        baseline_tree(args.reader_ref, tree)
                    res["reader_ref"] = args.reader_ref
                    res[f"{name}_before"] = run_phase(name, {"root": str(root), "n": args.n, "tree": str(tree)},
                                                      limit, cwd=tree)
            print(f"[{name} done in {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
            if args.work:  # what is measured so far, for a run that is stopped
                (work / "result.json").write_text(json.dumps(res, default=str))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(res, default=str))
        return 0
    print_summary(res, args)
    return 0


def print_summary(res: dict[str, Any], args: Namespace) -> None:
    print(f"bench_million: {args.n:,} images x {len(HEADS)} heads x {len(METHODS)} methods x {len(VOCABULARY)} "
          f"regions, {res.get('cores')} cores, phase memory limit {args.mem_limit_gb:g} GB")
    rows = summary_rows(res, args)
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'figure':{w}}  {'goal':24}  {'met':4}  measured  [baseline / ratio]")
    for label, goal, shown, met, base in rows:
        print(f"{label:{w}}  {goal:24}  {met:4}  {shown}" + (f"  [{base}]" if base else ""))


if __name__ == "__main__":
    sys.exit(main())
