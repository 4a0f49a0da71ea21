"""How a run computes (:class:`RunOptions`) and what it did (:class:`AnalysisReport`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from semcontrib.settings import (
    DEFAULT_PRECISION,
    PRECISIONS,
)

STAGES = ("model", "regions", "attributions")
MAX_CHUNK_SIZE = 512


@dataclass(frozen=True)
class RunOptions:
    """How a run computes (not what).

    Attributes
    ----------
    batch_size : images per model batch (the batches of a chunk are always the same images).
    chunk_size : images per chunk for images planned by this run (earlier chunks keep their size).
    device : ``cpu``, ``cuda`` or ``cuda:N``.
    precision : ``fp32`` or ``bf16`` (autocast; LRP and IG always run in fp32, heads in fp32). It changes
        the results, so it is part of the store keys: a bf16 corpus never mixes with an fp32 one.
    channels_last : NHWC weights and inputs (the same values up to float rounding order).
    workers : worker processes that decode images and run region sources (0: in this process).
    shard : ``(I, N)``: compute only shard I of N of the chunks and publish nothing; None: everything.
    wait : queue behind another run (else raise :class:`~semcontrib.corpus.CorpusBusyError`).
    progress : called with (images done, images to do).
    """

    batch_size: int = 8
    chunk_size: int = 128
    device: str = "cpu"
    precision: str = DEFAULT_PRECISION
    channels_last: bool = False
    workers: int = 0
    shard: tuple[int, int] | None = None
    wait: bool = True
    progress: Callable[[int, int], None] | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "chunk_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.chunk_size > MAX_CHUNK_SIZE:  # a chunk's work files must stay under the reader's caps
            raise ValueError(f"chunk_size must be at most {MAX_CHUNK_SIZE}, got {self.chunk_size}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or not 0 <= self.workers <= 256:
            raise ValueError(f"workers must be an integer from 0 to 256, got {self.workers!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.shard is not None:
            i, n = self.shard
            if not (isinstance(i, int) and isinstance(n, int) and 1 <= i <= n):
                raise ValueError(f"shard must be (I, N) with 1 <= I <= N, got {self.shard!r}")


@dataclass(frozen=True)
class AnalysisReport:
    """What a run did (``n_ok`` is -1 for a shard, which publishes no tables)."""

    corpus: Path
    n_inputs: int
    n_ok: int
    skipped: list[tuple[str, str]]
    seconds: float
    computed: dict[str, int]
    discarded: list[str] = field(default_factory=list)
    model_loaded: bool = True
    chunks: tuple[int, int] = (0, 0)
    shard: tuple[int, int] | None = None

    def summary(self) -> str:
        where = f" (shard {self.shard[0]}/{self.shard[1]}; tables not written)" if self.shard else ""
        lines = [f"corpus: {self.corpus}{where}",
                 f"images: {self.n_ok} analysed, {len(self.skipped)} skipped, of {self.n_inputs}" if self.n_ok >= 0
                 else f"images: {self.n_inputs} inputs, {len(self.skipped)} not planned",
                 f"chunks: {self.chunks[1]} of {self.chunks[0]} needed work"
                 + ("" if self.model_loaded else " (model not loaded)"),
                 "computed this run: " + ", ".join(f"{k} {v}" for k, v in self.computed.items()),
                 f"time: {self.seconds:.1f} s"]
        if self.discarded:
            lines.append(f"bad work files found and recomputed: {len(self.discarded)}")
        for path, reason in self.skipped:
            lines.append(f"  skipped {path}: {reason}")
        return "\n".join(lines)
