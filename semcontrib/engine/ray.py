"""The analysis on a Ray cluster with Ray Data (``semcontrib analyze --engine ray``).

The driver (this process) plans the chunks exactly as the local engine does (:func:`make_plan`), then
streams the chunks that need work through a Ray Data pipeline of three stages::

    chunks ──> model stage (actors: decode, predict; one GPU each with --device cuda)
           ──> region stage (CPU tasks: decode, segment)
           ──> attribution stage (actors: attributions, region statistics, validity)

Each Ray stage runs the engine's declared stages of one group (``semcontrib.engine.STAGES``: the ``group`` of
each :class:`semcontrib.engine.stage.Stage`) through :meth:`AnalysisRun.compute_stage`, the same compute-or-load
loop as a local run: stored results are read, never recomputed, and each group's results are written to the
corpus's chunk files, so the corpus must be on a file system every node sees (NFS, Lustre, a mounted bucket).
The stages compute each chunk with the same images in the same batches as the local engine, so the results
are the same bit for bit on the same hardware. Finally the driver aggregates the chunks' statistics into Parquet
parts and publishes the tables, as a local run without ``--shard`` does after its shards.

Ray is an optional extra (``pip install semcontrib[ray]``). ``RAY_ADDRESS`` (or ``ray.init`` called
before) names the cluster; without it a local Ray instance starts with this machine's cores.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from semcontrib import corpus as cstore
from semcontrib.engine import (
    STAGES,
    AnalysisReport,
    AnalysisRun,
    Generation,
    InputEntry,
    PlannedInput,
    RunOptions,
    make_plan,
)
from semcontrib.settings import IN_MEMORY_MODEL, AnalysisSettings

logger = logging.getLogger(__name__)

MODEL, REGIONS, ATTRIBUTIONS = STAGES  # the groups of stages, one Ray stage each


def _members(row: dict[str, Any]) -> list[PlannedInput]:
    return [PlannedInput(InputEntry(Path(p)), str(i), "", int(row["chunk"]), k)
            for k, (i, p) in enumerate(zip(row["ids"], row["paths"]))]


class _Stage:
    """One stage's actor or task state: an :class:`AnalysisRun` built once per process."""

    def __init__(self, stage: str, settings: dict[str, Any], out: str, options: dict[str, Any],
                 stems: dict[str, int], identity: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(max(1, int(options.pop("threads", 1))))
        self.stage = stage
        self.run = AnalysisRun(AnalysisSettings.from_record(settings), out, options=RunOptions(**options),
                               identity=identity)
        self.run.stems = Counter(stems)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        for k in range(len(batch["chunk"])):
            row = {name: batch[name][k] for name in batch}
            batch["computed"][k] = _counted(self.run, lambda r=row: self.run.compute_stage(
                self.stage, int(r["chunk"]), _members(r)), str(row["computed"]))
        return batch


def _counted(run: AnalysisRun, work: Any, before: str) -> str:
    """Run ``work`` and add what it computed to the JSON counts ``before`` (carried along the chunk's row)."""
    counts = json.loads(before or "{}")
    start = dict(run.computed)
    work()
    for k, v in run.computed.items():
        counts[k] = counts.get(k, 0) + v - start.get(k, 0)
    return json.dumps(counts)


def _region_task(row: dict[str, Any], settings: dict[str, Any], out: str, options: dict[str, Any],
                 stems: dict[str, int], identity: dict[str, Any]) -> dict[str, Any]:
    stage = _REGION_STAGES.get(out)
    if stage is None:
        stage = _REGION_STAGES[out] = _Stage(REGIONS, settings, out, dict(options), stems, identity)
    row["computed"] = _counted(stage.run, lambda: stage.run.compute_stage(REGIONS, int(row["chunk"]), _members(row)),
                               str(row["computed"]))
    return row


_REGION_STAGES: dict[str, _Stage] = {}  # one per worker process and corpus


def run_on_ray(settings: AnalysisSettings, out: str | Path, options: RunOptions,
               entries: Sequence[InputEntry]) -> AnalysisReport:
    """Analyse ``entries`` into the corpus at ``out`` on Ray; the report of the driver's final pass."""
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'semcontrib[ray]'") from None
    if options.shard is not None:
        raise ValueError("--engine ray and --shard do not go together: Ray spreads the chunks itself")
    if settings.model.startswith(IN_MEMORY_MODEL):
        raise ValueError("--engine ray needs a named model or a checkpoint path (workers load it themselves)")
    t0 = time.perf_counter()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 num_cpus=None if address else (os.cpu_count() or 1))
    driver = AnalysisRun(settings, root, options=replace(options, workers=0))
    with cstore.run_lock(root, wait=options.wait):
        cstore.remove_stale_temporaries(root)
        plan = make_plan(root, list(entries), options.chunk_size)
        done = driver.done_chunks(plan, Generation.read(root))
        todo = [c for c in plan.chunks if c not in done]
        computed = _pipeline(ray, driver, plan, todo) if todo else {}
    # the driver's pass: everything is stored, so it computes nothing, aggregates and publishes
    report = AnalysisRun(settings, root, options=replace(options, workers=0), identity=driver.identity).run(entries)
    return replace(report, chunks=(len(plan.chunks), len(todo)), seconds=time.perf_counter() - t0,
                   computed={k: report.computed.get(k, 0) + computed.get(k, 0) for k in report.computed})


def _pipeline(ray: Any, driver: AnalysisRun, plan: Any, todo: list[int]) -> dict[str, int]:
    """Stream the chunks ``todo`` through the three stages; return what the stages computed."""
    import ray.data

    settings, root, options = driver.settings, driver.root, driver.options
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    gpu = options.device.startswith("cuda")
    n_gpus = int(ray.cluster_resources().get("GPU", 0))
    n_cpus = int(ray.cluster_resources().get("CPU", 1))
    model_actors = max(1, n_gpus) if gpu else 1
    threads = 1 if gpu else max(1, n_cpus // 2)
    opts = {"batch_size": options.batch_size, "chunk_size": options.chunk_size, "device": options.device,
            "precision": options.precision, "channels_last": options.channels_last, "workers": 0, "wait": True}
    stems = {s: n for s, n in Counter(i.entry.path.stem for i in plan.inputs).items() if n > 1}
    common = {"settings": settings.to_record(), "out": str(root.resolve()), "stems": stems,
              "identity": driver.identity}
    rows = [{"chunk": c, "ids": [m.image_id for m in plan.chunks[c]], "computed": "{}",
             "paths": [str(Path(m.entry.path).resolve()) for m in plan.chunks[c]]} for c in todo]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    model_args = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    pool = ray.data.ActorPoolStrategy(size=model_actors)
    ds = ds.map_batches(_Stage, batch_size=1, compute=pool,
                        fn_constructor_kwargs={"stage": MODEL, "options": {**opts, "threads": threads}, **common},
                        **model_args)
    ds = ds.map(_region_task, fn_kwargs={"options": opts, **common}, num_cpus=1)
    ds = ds.map_batches(_Stage, batch_size=1, compute=ray.data.ActorPoolStrategy(size=model_actors),
                        fn_constructor_kwargs={"stage": ATTRIBUTIONS, "options": {**opts, "threads": threads},
                                               **common}, **model_args)
    finished, computed = 0, {}  # type: tuple[int, dict[str, int]]
    total = sum(len(plan.chunks[c]) for c in todo)
    for batch in ds.iter_batches(batch_size=1):
        finished += sum(len(ids) for ids in batch["ids"])
        for counts in batch["computed"]:
            for k, v in json.loads(str(counts)).items():
                computed[k] = computed.get(k, 0) + v
        if options.progress is not None:
            options.progress(finished, total)
    return computed
