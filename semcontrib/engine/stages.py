"""The stages of one chunk, declared (:meth:`StageWork.chunk_stages`): decoding, image records, predictions, region
maps, targets, pixel methods' maps, region labels, attributions (pixel, region and external methods) and validity,
each with what it reads, how it computes, and how it loads and writes its work file (:mod:`semcontrib.engine.stage`
runs them)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib import corpus as cstore
from semcontrib.corpus import (
    ChunkAttribution,
    ChunkRegions,
    HeadAttribution,
    ImageRecord,
    PredictionWork,
    RegionWork,
    ValidityWork,
)
from semcontrib.engine.chunk import (
    ChunkImages,
    ChunkState,
    labels_or_unassigned,
    resized,
    subset,
    with_stats,
)
from semcontrib.engine.external import external_source, read_external
from semcontrib.engine.keys import chunk_region_key, validity_digest
from semcontrib.engine.passes import ModelPasses
from semcontrib.engine.plan import PlannedInput
from semcontrib.engine.stage import Later, Stage
from semcontrib.engine.workers import (  # per-image work, in worker processes that never import torch
    Done,
    Executor,
    Prepared,
    PrepareJob,
    RegionContext,
    SegmentJob,
    _one_line,
    path_text,
    prepare_image,
    segment_image,
)
from semcontrib.methods import is_pixel_method
from semcontrib.regions import RegionSource, source_key, uses_evidence
from semcontrib.settings import (
    ExternalAttributions,
)
from semcontrib.store.records import image_digest

logger = logging.getLogger(__name__)


class StageWork(ModelPasses):
    """The stages of an :class:`~semcontrib.engine.run.AnalysisRun`'s chunks: their declarations, and how each
    loads, computes (through the model passes of :class:`ModelPasses`) and writes its result. A mixin: the run
    supplies the attributes annotated here."""

    source: RegionSource
    size: int
    rkey: str
    mkey: str
    store: cstore.WorkStore
    context: RegionContext
    computed: dict[str, int]
    stems: Counter[str]
    head_classes: dict[str, int]
    method_keys: dict[str, str]
    vkey: str
    executor: Executor | None
    _chunk_rkeys: dict[int, str]

    # ---- the declarations
    def chunk_stages(self) -> list[Stage]:
        """Every stage of a chunk for these settings, in the order they run. The region maps are computed
        elsewhere (worker processes) while the pixel methods' maps are computed, because nothing between
        ``regions`` and ``labels`` reads them; ``decode``, when it runs, runs first."""
        methods, paths = self.settings.all_methods, self.store.paths
        stages = [
            Stage("decode", self._decoded),
            Stage("images", self._records, reads=("decode",), load=self._load_images, write=self._write_images,
                  group="model", path=paths.images),
            Stage("predictions", self._predictions, reads=("images", "decode"), load=self._load_predictions,
                  write=self._write_predictions, key=self.mkey, group="model", path=partial(paths.pred, self.mkey)),
            Stage("regions", self._start_regions, reads=("images", "predictions"), load=self._load_regions,
                  write=self._write_regions, key=self.rkey, group="regions", path=self._regions_path),
            Stage("targets", self._chunk_targets, reads=("images", "predictions")),
            *(Stage(f"maps:{m}", partial(self._chunk_maps, m), reads=("decode", "targets"))
              for m, obj in self.methods.items() if is_pixel_method(obj)),
            Stage("labels", self._chunk_labels, reads=("targets", "regions")),
        ]
        for m in methods:
            obj = self.methods.get(m)  # None: external heatmaps
            reads = ("labels",) if obj is None else (f"maps:{m}", "labels") if is_pixel_method(obj) else \
                ("decode", "labels")
            stages.append(Stage(f"attr:{m}", partial(self._attribute, m), reads=reads,
                                load=partial(self._load_attribution, m), write=partial(self._write_attribution, m),
                                key=self.method_keys[m], group="attributions",
                                path=partial(paths.attr, m, self.method_keys[m])))
        if self.settings.validity:
            stages.append(Stage("validity", self._validate, reads=("decode", "labels", *(f"attr:{m}" for m in methods)),
                                load=self._load_validity, write=self._write_validity, key=self.vkey,
                                group="attributions", path=partial(paths.validity, self.vkey)))
        return stages

    # ---- decoding (submitted before the chunk's stages run, in worker processes or inline)
    def submit_decode(self, s: ChunkState, todo: Sequence[Stage], executor: Executor) -> None:
        """Start decoding the chunk's images: display JPEGs when ``images`` is computed, and the region maps
        of a source that reads no class evidence when ``regions`` is."""
        names = {st.name for st in todo}
        segment = "regions" in names and not uses_evidence(self.source)
        s.prepared = [executor.submit(prepare_image, PrepareJob(m.image_id, m.entry.path, self.size,
                                                                "images" in names, segment)) for m in s.members]

    def _decoded(self, s: ChunkState) -> dict[str, Prepared]:
        done = [f.result() for f in s.prepared]
        s.prepared = []
        return {p.image_id: p for p in done}

    # ---- images and predictions
    def _load_images(self, s: ChunkState) -> dict[str, ImageRecord] | None:
        return self.store.read_images(s.chunk, s.ids)

    def _records(self, s: ChunkState) -> dict[str, Prepared]:
        return {i: s.results["decode"][i] for i in s.ids}

    def _write_images(self, s: ChunkState, prepared: Mapping[str, Prepared]) -> dict[str, ImageRecord]:
        records = {i: p.record for i, p in prepared.items()}
        self.store.write_images(s.chunk, records, {i: p.display_jpeg for i, p in prepared.items()})
        return records

    def _load_predictions(self, s: ChunkState) -> dict[str, PredictionWork] | None:
        preds = self.store.read_predictions(self.mkey, s.chunk, self.head_classes)
        return preds if preds is not None and set(s.ok()) <= set(preds) else None

    def _predictions(self, s: ChunkState) -> dict[str, PredictionWork]:
        ok, decoded = s.ok(), s.results["decode"]
        self.computed["predictions"] += len(ok)
        return self._predict(ok, {i: decoded[i].rgb for i in ok})

    def _write_predictions(self, s: ChunkState, preds: dict[str, PredictionWork]) -> dict[str, PredictionWork]:
        self.store.write_predictions(self.mkey, s.chunk, preds)
        return preds

    def _chunk_targets(self, s: ChunkState) -> ChunkImages:
        """The chunk's data record: the images analysed, their pixels (when decoded) and targets."""
        ok, decoded = s.ok(), s.results.get("decode", {})
        assert s.preds is not None
        rgb = {i: p.rgb for i in ok if (p := decoded.get(i)) is not None and p.rgb is not None}
        return ChunkImages(ok, rgb, self._targets(ok, s.preds))

    def _chunk_maps(self, method: str, s: ChunkState) -> dict[str, dict[str, HeadAttribution]]:
        """The pixel maps of the images whose stored attributions cannot be kept (:meth:`_reused`)."""
        data: ChunkImages = s.results["targets"]
        kept = self._reused(method, s).works
        return self._pixel_maps(method, subset(data, [i for i in data.ok if i not in kept]))

    def _chunk_labels(self, s: ChunkState) -> ChunkImages:
        data: ChunkImages = s.results["targets"]
        return replace(data, labels=self._labels(s, data.ok))

    # ---- region maps
    def _load_regions(self, s: ChunkState) -> ChunkRegions | None:
        """The stored maps' failures and digest (no maps), when every analysed image has a map or a failure
        that will not pass (``s.retry`` false: any failure)."""
        regions = self.store.read_regions(self.source.name, self.region_key(s.chunk, s.members), s.chunk,
                                          len(self.vocabulary), labels=False)
        if regions is None or not all(i in regions.works and (regions.works[i].labels is not None
                                                              or regions.works[i].permanent or not s.retry)
                                      for i in s.ok()):
            return None
        return regions

    def _start_regions(self, s: ChunkState) -> Later:
        """Keep the region maps stored and final; start computing the others (workers, or inline)."""
        ok = s.ok()
        kept = self.store.read_regions(self.source.name, self.region_key(s.chunk), s.chunk, len(self.vocabulary))
        works = {i: w for i, w in (kept.works.items() if kept else ()) if w.labels is not None or w.permanent}
        works.update(self._unedited_base_regions(s, ok, works))
        s.region_digests = {i: image_digest(i, w) for i, w in works.items()}
        decoded: Mapping[str, Prepared] = s.results.get("decode", {})
        executor = self.executor or Executor(0, self.context)
        handles: dict[str, Any] = {}
        assert s.preds is not None
        for m in s.members:
            i = m.image_id
            if i in ok and i not in works:
                p = decoded.get(i)
                handles[i] = Done(p.regions) if p is not None and p.regions is not None else \
                    executor.submit(segment_image, SegmentJob(i, m.entry.path, s.preds[i].evidence))

        def finish() -> dict[str, RegionWork]:
            for i, h in handles.items():
                works[i] = h.result()
                self.computed["regions"] += 1
            return {i: works[i] for i in ok}

        return Later(finish)

    def _regions_path(self, chunk: int) -> Path:
        return self.store.paths.regions(self.source.name, self.region_key(chunk), chunk)

    def _write_regions(self, s: ChunkState, works: Mapping[str, RegionWork]) -> ChunkRegions:
        return self.store.write_regions(self.source.name, self.region_key(s.chunk), s.chunk, works)

    def region_key(self, chunk: int, members: Sequence[PlannedInput] | None = None) -> str:
        """The region key of one chunk: :attr:`rkey`, or, when the source has region edits for some of
        the chunk's images (``image_identity``, see ``segmentation/edited.py``), a key of its own that
        folds in what those edits do, so that an edit recomputes only its image's chunk."""
        if chunk not in self._chunk_rkeys and members is not None:
            identity = getattr(self.source, "image_identity", None)
            marks = [identity(m.image_id, str(m.entry.path)) for m in members] if identity is not None else []
            self._chunk_rkeys[chunk] = chunk_region_key(self.rkey, marks)
        return self._chunk_rkeys.get(chunk, self.rkey)

    def _unedited_base_regions(self, s: ChunkState, ok: list[str], have: Mapping[str, RegionWork]
                               ) -> dict[str, RegionWork]:
        """Region maps of the chunk's images without edits, read from the base source's stored maps (an
        edited source's map of such an image is the base's; the base vocabulary is a prefix of the
        edited one), so that an edit segments only the edited images again."""
        base = getattr(self.source, "base", None)
        identity = getattr(self.source, "image_identity", None)
        if base is None or identity is None:
            return {}
        want = [m.image_id for m in s.members if m.image_id in ok and m.image_id not in have
                and not identity(m.image_id, str(m.entry.path))]
        if not want:
            return {}
        stored = self.store.read_regions(base.name, source_key(base, self.mkey), s.chunk, len(base.vocabulary))
        if stored is None:
            return {}
        return {i: w for i in want if (w := stored.works.get(i)) is not None and w.labels is not None}

    def _labels(self, s: ChunkState, ok: list[str]) -> dict[str, np.ndarray]:
        """The chunk's region maps: those just computed, or read from the store (once, with the maps)."""
        assert s.regions is not None
        works = s.regions.works
        if any(w.labels is not None and w.labels.shape != (self.size, self.size) for w in works.values()):
            full = self.store.read_regions(self.source.name, self.region_key(s.chunk), s.chunk, len(self.vocabulary))
            if full is None or full.digest != s.regions.digest:
                raise cstore.CorpusError(f"the region maps of chunk {s.chunk} changed while the run read them")
            works = full.works
        return {i: labels_or_unassigned(works.get(i), self.size) for i in ok}

    # ---- attributions
    def _load_attribution(self, method: str, s: ChunkState) -> ChunkAttribution | None:
        """A method's stored attributions, when computed from the stored region maps for every analysed image
        (external heatmaps: from the same heatmap files)."""
        if s.regions is None:
            return None
        a = self.store.read_attribution(method, self.method_keys[method], s.chunk, self.head_classes, None)
        ok, ext = s.ok(), self.settings.external
        if a is None or a.regions_digest != s.regions.digest or not set(ok) <= set(a.works) or (
                ext is not None and method == ext.name and any(a.sources.get(i) != s.sources[i] for i in ok)) \
                or any(resized(h, len(self.vocabulary)) is not h for w in a.works.values() for h in w.values()):
            return None  # (a file of another vocabulary size is kept: its images' work may be reused)
        return a

    def _known_region_digests(self, s: ChunkState) -> dict[str, str]:
        """Image id -> its region map's digest, for the maps known final now: all the chunk's once its
        ``regions`` are in, else those kept when the stage started (:attr:`ChunkState.region_digests`)."""
        return dict(s.regions.image_digests) if s.regions is not None else s.region_digests

    def _reused(self, method: str, s: ChunkState) -> ChunkAttribution:
        """The stored attributions of ``method`` that stay valid for the chunk, looked up once per chunk: those
        of analysed images whose region map has the digest recorded with them (and, for external heatmaps,
        the same heatmap file), with their statistics fitted to the vocabulary (:func:`resized`) and their
        display maps, to be written again as they are. Only the other images are computed: an edit redoes
        its images' work, not its chunk's; pixel maps never depend on the regions."""
        if method not in s.reused:
            s.reused[method] = self._reusable_attribution(method, s)
        return s.reused[method]

    def _reusable_attribution(self, method: str, s: ChunkState) -> ChunkAttribution:
        none = ChunkAttribution({}, "")
        known = self._known_region_digests(s)
        if not known:
            return none
        stored = self.store.read_attribution(method, self.method_keys[method], s.chunk, self.head_classes, None,
                                             maps=True)
        if stored is None or not stored.image_digests:
            return none
        ext, K = self.settings.external, len(self.vocabulary)
        external = ext is not None and method == ext.name
        works: dict[str, dict[str, HeadAttribution]] = {}
        for i in s.ok():
            d, w = known.get(i), stored.works.get(i)
            if not d or w is None or stored.image_digests.get(i) != d or set(w) != set(self.heads) \
                    or (external and stored.sources.get(i) != s.sources.get(i)):
                continue
            fitted = {h: resized(a, K) for h, a in w.items()}
            if all(a is not None for a in fitted.values()):
                works[i] = {h: a for h, a in fitted.items() if a is not None}
        return ChunkAttribution(works, stored.regions_digest, {i: stored.sources[i] for i in works
                                                                if i in stored.sources})

    def _attribute(self, method: str, s: ChunkState) -> ChunkAttribution:
        """One method's attributions of the chunk, with region statistics (a pixel method's maps, computed by
        its ``maps:`` stage, are dropped once their statistics are in)."""
        K = len(self.vocabulary)
        ext = self.settings.external
        everything: ChunkImages = s.results["labels"]
        maps = s.results.pop(f"maps:{method}", None)
        assert s.regions is not None
        kept = self._reused(method, s).works
        data = subset(everything, [i for i in everything.ok if i not in kept])
        ok, labels = data.ok, data.labels
        self.computed[f"attr:{method}"] += len(ok)
        works: dict[str, Mapping[str, HeadAttribution]]
        if ext is not None and method == ext.name:
            members = {m.image_id: m for m in s.members}
            works = {i: self._external(members[i], ext, {h: int(data.targets[h][k]) for h in self.heads}, labels[i])
                     for k, i in enumerate(ok)}
        elif maps is not None:
            works = {i: {h: with_stats(a, labels[i], K) for h, a in maps[i].items()} for i in ok}
        else:
            works = dict(self._score_regions(method, data))
        everything_ok = everything.ok
        digests = s.regions.image_digests
        return ChunkAttribution({i: works[i] if i in works else kept[i] for i in everything_ok}, s.regions.digest,
                                {i: s.sources[i] for i in everything_ok} if ext is not None and method == ext.name
                                else {}, {i: digests[i] for i in everything_ok if i in digests})

    def _write_attribution(self, method: str, s: ChunkState, work: ChunkAttribution) -> ChunkAttribution:
        ext = self.settings.external
        return self.store.write_attribution(method, self.method_keys[method], s.chunk, work, len(self.vocabulary),
                                            exact=ext is not None and method == ext.name)

    def _external(self, member: PlannedInput, ext: ExternalAttributions, targets: Mapping[str, int],
                  labels: np.ndarray) -> dict[str, HeadAttribution]:
        """Heatmaps computed elsewhere: ``<folder>/<image file stem>.npz`` with one H×W array per head."""
        src, _ = external_source(ext, member)
        try:
            if self.stems.get(member.entry.path.stem, 0) > 1:
                raise ValueError(f"ambiguous heatmap file {src.name}: several inputs have the file stem "
                                 f"{path_text(Path(member.entry.path.stem))!r}")
            maps = read_external(src, self.heads, self.size)
            return {h: with_stats(HeadAttribution(targets[h], "ok", maps[h]), labels, len(self.vocabulary))
                    for h in self.heads}
        except (ValueError, OSError) as exc:
            reason = _one_line(exc)
            logger.warning("external heatmaps for %s: %s", path_text(member.entry.path), reason)
            return {h: HeadAttribution(targets[h], f"missing: {reason}") for h in self.heads}

    # ---- validity
    def _validity_pairs(self) -> list[tuple[str, str]]:
        return [(m, h) for m in self.settings.all_methods for h in self.heads]

    def _load_validity(self, s: ChunkState) -> dict[str, ValidityWork] | None:
        """The stored validity records, when computed from the stored region maps (and heatmap files) for
        every analysed image with a region map."""
        if s.regions is None:
            return None
        stored = self.store.read_validity(self.vkey, s.chunk, self._validity_pairs())
        with_regions = [i for i in s.ok() if s.regions.works[i].labels is not None]
        if stored is None or stored[1] != validity_digest(s.regions.digest, s.sources) \
                or not set(with_regions) <= set(stored[0]):
            return None
        return stored[0]

    def _validate(self, s: ChunkState) -> dict[str, ValidityWork]:
        """The validity records of the chunk's images with a region map: those stored for the same region map
        (and heatmap files) are kept, the others computed (a record reads only its own image's work)."""
        from semcontrib.validity import NOT_SAMPLED

        assert s.regions is not None and s.preds is not None
        data: ChunkImages = s.results["labels"]
        ids = [i for i in data.ok if s.regions.works[i].labels is not None]
        digests = self._validity_image_digests(s)
        kept: dict[str, ValidityWork] = {}
        stored_digests = self.store.validity_image_digests(self.vkey, s.chunk) if digests else {}
        if stored_digests:
            stored = self.store.read_validity(self.vkey, s.chunk, self._validity_pairs())
            kept = {i: w for i, w in (stored[0] if stored else {}).items()
                    if i in ids and digests.get(i) and stored_digests.get(i) == digests[i]}
        config = self._validity_config()  # images outside its sample get a record without values
        todo = [i for i in ids if i not in kept and config.in_sample(i)]
        new = self._validity_records(data, todo, {m: s.results[f"attr:{m}"] for m in self.settings.all_methods},
                                     s.preds) if todo else {}
        self.computed["validity"] += len(new)
        left_out = ValidityWork({p: (*[float("nan")] * len(cstore.VALIDITY_VALUES), NOT_SAMPLED)
                                 for p in self._validity_pairs()})
        return {i: new[i] if i in new else kept.get(i, left_out) for i in ids}

    def _validity_image_digests(self, s: ChunkState) -> dict[str, str]:
        """Image id -> what its validity record is computed from besides the validity key: its region map
        and its external heatmap file (empty when the region maps' digests are not recorded)."""
        assert s.regions is not None
        return {i: validity_digest(d, {i: s.sources[i]} if i in s.sources else {})
                for i, d in s.regions.image_digests.items()}

    def _write_validity(self, s: ChunkState, works: dict[str, ValidityWork]) -> dict[str, ValidityWork]:
        assert s.regions is not None
        self.store.write_validity(self.vkey, s.chunk, works, validity_digest(s.regions.digest, s.sources),
                                  self._validity_image_digests(s))
        return works
