"""Milliseconds per image of the ``concepts`` region source on the twelve bundled photographs, CPU.

Usage::

    python benchmarks/bench_concepts.py [--repeat 2] [--threads 1] [--full-size sam3,clipseg]

Builds the tiny random-weight models of :mod:`semcontrib.segmentation.concepts_tiny` in a temporary
folder and times ``ConceptSource.segment`` with the prompts ``eye,ear,nose,rest`` (``clipseg``:
``sky,tree,water,rest``) on every bundled photograph, for the ``sam3``, ``grounded-sam`` (Grounding
DINO + SAM) and ``clipseg`` backends, with ``score_threshold=0`` so every instance is kept and the
post-processing does its full work; the one-off model loading; and, as the baseline measured in the
same run, the default ``landscape`` source (rules, no class evidence), with the ratio.

The tiny models measure the source's own cost (processors, post-processing at full size, the
partition), not a real model's. ``--full-size`` builds the named backends' models from their
*default* configurations (the published architectures: SAM 3 ViT at 1008 px, CLIPSeg rd64 on
ViT-B/16) with random weights, nothing downloaded, and times one photograph: the compute a real
checkpoint costs on this CPU. Their outputs are meaningless. ``--threads`` sets torch's CPU threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from semcontrib.demo import DEMO_IMAGES
from semcontrib.regions import ImageInput
from semcontrib.segmentation import make_region_source

PROMPTS = {"sam3": "eye,ear,nose,rest", "grounded-sam": "eye,ear,nose,rest", "clipseg": "sky,tree,water,rest"}


def _photos() -> dict[str, ImageInput]:
    out = {}
    for name, (load, _) in DEMO_IMAGES.items():
        rgb = np.asarray(load())
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        out[name] = ImageInput(name, np.ascontiguousarray(rgb[..., :3].astype(np.uint8)), name)
    return out


def _ms(src, image: ImageInput, repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        src.segment(image)
    return 1000 * (time.perf_counter() - t0) / repeat


def _full_size(kind: str, folder: Path) -> Path:
    """The default-configuration (published-size) model of a backend, random weights, saved."""
    import torch
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        Sam3Config,
        Sam3Model,
        Sam3Processor,
        ViTImageProcessor,
    )

    from semcontrib.segmentation.concepts_tiny import clip_tokenizer

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "sam3":
        from transformers import Sam3ImageProcessor

        model, proc = Sam3Model(Sam3Config()), Sam3Processor(image_processor=Sam3ImageProcessor(),
                                                             tokenizer=clip_tokenizer())
    elif kind == "clipseg":
        model = CLIPSegForImageSegmentation(CLIPSegConfig())
        proc = CLIPSegProcessor(image_processor=ViTImageProcessor(size={"height": 352, "width": 352}),
                                tokenizer=clip_tokenizer())
    else:
        raise ValueError(f"--full-size knows sam3 and clipseg, not {kind!r}")
    n = sum(p.numel() for p in model.parameters())
    print(f"{kind} full size: {n / 1e6:.0f} M parameters (random weights)")
    model.eval().save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--full-size", default="", help="comma-separated backends to time at full size (sam3, clipseg)")
    args = ap.parse_args()

    import torch

    from semcontrib.segmentation import concepts_tiny

    torch.set_num_threads(args.threads)
    photos = _photos()
    tmp = Path(tempfile.mkdtemp(prefix="bench-concepts-"))
    models = {k: concepts_tiny.BUILDERS[k](tmp / k) for k in ("sam3", "grounding-dino", "sam", "clipseg")}
    sources = {
        "sam3": make_region_source(f"concepts:{PROMPTS['sam3']}", backend="sam3", model=str(models["sam3"]),
                                   score_threshold="0"),
        "grounded-sam": make_region_source(f"concepts:{PROMPTS['grounded-sam']}", backend="grounded-sam",
                                           model=str(models["sam"]), detector=str(models["grounding-dino"]),
                                           score_threshold="0"),
        "clipseg": make_region_source(f"concepts:{PROMPTS['clipseg']}", backend="clipseg",
                                      model=str(models["clipseg"]), score_threshold="0"),
    }
    landscape = make_region_source("landscape")
    landscape.segment(photos["coffee"])
    base = {n: _ms(landscape, im, 1) for n, im in photos.items()}
    base_mean = float(np.mean(list(base.values())))

    print(f"torch threads: {torch.get_num_threads()}; tiny random-weight models (see the docstring)")
    print(f"{'source':48s} {'load s':>7s} {'mean ms / image':>16s} {'max ms':>8s} {'vs landscape':>13s}")
    for kind, src in sources.items():
        t0 = time.perf_counter()
        src.segment(photos["coffee"])  # loads the models (once per process)
        load_s = time.perf_counter() - t0
        times = {n: _ms(src, im, args.repeat) for n, im in photos.items()}
        mean = float(np.mean(list(times.values())))
        label = f"concepts {kind} (tiny; {PROMPTS[kind]})"
        print(f"{label:48s} {load_s:7.2f} {mean:16.1f} {max(times.values()):8.1f} {mean / base_mean:12.2f}x")
    label = "landscape (rules, no evidence; baseline)"
    print(f"{label:48s} {'':7s} {base_mean:16.1f} {max(base.values()):8.1f} {1.0:12.2f}x")

    for kind in [k for k in args.full_size.split(",") if k]:
        folder = _full_size(kind, tmp / f"full-{kind}")
        src = make_region_source(f"concepts:{PROMPTS[kind]}", backend=kind, model=str(folder), score_threshold="0")
        t0 = time.perf_counter()
        src.segment(photos["astronaut"])
        first = time.perf_counter() - t0
        ms = _ms(src, photos["astronaut"], 1)
        print(f"concepts {kind} full size, astronaut 512x512, {PROMPTS[kind]}: first call (with loading) "
              f"{first:.1f} s, then {ms:.0f} ms per image = {ms / base['astronaut']:.0f}x landscape on it "
              f"({base['astronaut']:.0f} ms)")


if __name__ == "__main__":
    main()
