"""The model's passes over a chunk's images, in batches of ``batch_size`` (always the same images): predictions
with class evidence, targets, pixel methods' maps, region methods' scores and the validity record. The only part
of the engine that runs the model; the stages (:mod:`semcontrib.engine.stages`) call it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from semcontrib import corpus as cstore
from semcontrib.corpus import ChunkAttribution, HeadAttribution, PredictionWork, ValidityWork
from semcontrib.engine.chunk import ChunkImages, HeadClasses, item_or_none, region_scores, with_stats
from semcontrib.engine.options import RunOptions
from semcontrib.methods import AttributionMethod, is_pixel_method, is_region_method
from semcontrib.model import ComputeOptions
from semcontrib.settings import AnalysisSettings

if TYPE_CHECKING:  # torch, and the modules that import it, are imported where a pass runs
    import torch

    from semcontrib.model import MultitaskModel


class ModelPasses:
    """A mixin of :class:`~semcontrib.engine.run.AnalysisRun` (which supplies the attributes annotated here):
    every model pass of a chunk. ``rgb`` is uint8 SxSx3 per image id; batches follow the order of ``ok``."""

    settings: AnalysisSettings
    options: RunOptions
    compute: ComputeOptions
    methods: dict[str, AttributionMethod]
    vocabulary: tuple[str, ...]
    evidence_groups: dict[str, list[int]]
    identity: dict[str, Any]
    heads: list[str]

    @property
    def net(self) -> MultitaskModel:
        raise NotImplementedError

    def _tensor(self, ids: list[str], rgb: Mapping[str, np.ndarray]) -> torch.Tensor:
        import torch

        net = self.net
        return self.compute.tensor(torch.cat([net.preprocess(rgb[i]) for i in ids]))

    def _predict(self, ok: list[str], rgb: Mapping[str, np.ndarray]) -> dict[str, PredictionWork]:
        from semcontrib.model import predict_with_evidence

        out = {}
        for _, batch in self._numbered_batches(ok):
            with self.compute.context():
                preds, ev = predict_with_evidence(self.net, self._tensor(batch, rgb), self.evidence_groups)
            for k, i in enumerate(batch):
                out[i] = PredictionWork({h: preds.logits[h][k].astype(np.float32) for h in self.net.head_names},
                                        None if ev is None else ev[k])
        return out

    def _targets(self, ok: list[str], preds: Mapping[str, PredictionWork]) -> dict[str, np.ndarray]:
        from semcontrib.methods import resolve_targets

        if not ok:
            return {h: np.zeros(0, np.int64) for h in self.heads}
        logits = {h: np.stack([preds[i].logits[h] for i in ok]) for h in self.heads}
        targets = resolve_targets(HeadClasses(self.identity["heads"]), logits, self.heads,  # type: ignore[arg-type]
                                  dict(self.settings.targets))  # only head(name).classes is read
        return {h: np.asarray(t, np.int64) for h, t in targets.items()}

    def _pixel_maps(self, method: str, data: ChunkImages) -> dict[str, dict[str, HeadAttribution]]:
        """A pixel method's maps (float32, no statistics yet) for the chunk's images, in batches."""
        ok, rgb, targets = data.ok, data.rgb, data.targets
        obj = self.methods[method]
        if not is_pixel_method(obj):
            raise TypeError(f"method {method!r} is not a pixel method (level {obj.level!r})")
        works: dict[str, dict[str, HeadAttribution]] = {}
        for start, batch in self._numbered_batches(ok):
            dev = self._batch_targets(targets, start, len(batch))
            with self.compute.context():
                res = obj.attribute_batch(self.net, self._tensor(batch, rgb), dev)
            for k, i in enumerate(batch):
                works[i] = {h: HeadAttribution(int(targets[h][start + k]), "ok", np.asarray(res[h].maps[k], np.float32),
                                               delta=item_or_none(res[h].delta, k)) for h in self.heads}
        return works

    def _batch_targets(self, targets: Mapping[str, np.ndarray], start: int, n: int) -> dict[str, torch.Tensor]:
        """The targets of the batch of ``n`` images from position ``start``, on the model's device."""
        import torch

        return {h: torch.as_tensor(targets[h][start:start + n]).to(self.options.device) for h in self.heads}

    def _numbered_batches(self, ids: list[str]) -> list[tuple[int, list[str]]]:
        B = self.options.batch_size
        return [(k, ids[k:k + B]) for k in range(0, len(ids), B)]

    def _score_regions(self, method: str, data: ChunkImages) -> dict[str, dict[str, HeadAttribution]]:
        """A region method's scores of the chunk's regions, with their statistics, in batches."""
        ok, rgb, targets, labels, K = data.ok, data.rgb, data.targets, data.labels, len(self.vocabulary)
        obj = self.methods[method]
        if not is_region_method(obj):
            raise TypeError(f"method {method!r} is not a region method (level {obj.level!r})")
        works: dict[str, dict[str, HeadAttribution]] = {}
        for start, batch in self._numbered_batches(ok):
            dev = self._batch_targets(targets, start, len(batch))
            with self.compute.context():
                res = obj.attribute_regions(self.net, self._tensor(batch, rgb), dev,
                                            np.stack([labels[i] for i in batch]), self.vocabulary)
            for k, i in enumerate(batch):
                works[i] = {h: with_stats(HeadAttribution(
                    int(targets[h][start + k]), "ok", np.asarray(res[h].maps[k], np.float64),
                    delta=item_or_none(res[h].delta, k),
                    scores=np.asarray(res[h].scores[k], np.float64)), labels[i], K) for h in self.heads}
        return works

    def _validity_records(self, data: ChunkImages, ids: list[str], attrs: Mapping[str, ChunkAttribution],
                          preds: Mapping[str, PredictionWork]) -> dict[str, ValidityWork]:
        """The validity record of the images ``ids`` (those of ``data.ok`` with a region map) for every
        (method, head), from the methods' region scores; the unperturbed logits are the stored predictions."""
        import torch

        from semcontrib.validity import circular, compute_validity

        config = self._validity_config()
        circ = {m for m, obj in self.methods.items() if circular(obj.level, obj.params, config)}
        pairs = [(m, h) for m in attrs for h in self.heads]
        pos = {i: k for k, i in enumerate(data.ok)}
        K = len(self.vocabulary)
        out: dict[str, ValidityWork] = {}
        for _, batch in self._numbered_batches(ids):
            idx = [pos[i] for i in batch]
            scores = {m: {h: np.stack([region_scores(a.works[i][h], K) for i in batch]) for h in self.heads}
                      for m, a in attrs.items()}
            targets = {h: torch.as_tensor(data.targets[h][idx]).to(self.options.device) for h in self.heads}
            logits = {h: np.stack([preds[i].logits[h] for i in batch]) for h in self.heads}
            with self.compute.context():
                recs = compute_validity(self.net, self._tensor(batch, data.rgb),
                                        np.stack([data.labels[i] for i in batch]), self.vocabulary, targets, scores,
                                        config=config, circular_methods=circ, original_logits=logits)
            for n, i in enumerate(batch):
                out[i] = ValidityWork({p: (*(float(getattr(recs[p], c)[n]) for c in cstore.VALIDITY_VALUES),
                                           str(recs[p].note[n])) for p in pairs})
        return out

    def _validity_config(self) -> Any:
        from semcontrib.validity import ValidityConfig

        s = self.settings
        return ValidityConfig(baseline=s.validity_baseline, steps=s.validity_steps,
                              random_samples=s.validity_random_samples, sample=s.validity_sample)
