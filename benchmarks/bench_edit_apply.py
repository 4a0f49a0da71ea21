"""What "Apply" costs for one edited image: the dashboard's job re-runs ``analyze`` on the corpus with its
recorded settings, and the engine recomputes, in the chunks whose region key changed, the work of the images
whose region map changed (the others' stored attributions and validity records are kept).

One corpus of ``-n`` photographs (the bundled ones, then mirrored and rotated variants) in one chunk of
``--chunk-size`` images, analysed with the embedded EfficientNet-Lite0 ``imagenet-heads`` model, then, each
measured in the same run on the same machine:

* ``fresh``: the first analysis of all ``n`` images (the baseline: the whole chunk);
* ``rerun``: the same analysis again, nothing changed (model loading and the checks: Apply's floor);
* ``apply, label in vocabulary``: one rectangle on one image with a label the vocabulary has;
* ``apply, new label``: one more rectangle on the same image with a new label (the vocabulary grows);
* ``one image alone``: that image analysed into a corpus of its own (what recomputing only the edited
  image would cost, model loading included).

Prints the seconds, what each run computed, and each Apply against ``one image alone`` and ``fresh``.
Run: ``python benchmarks/bench_edit_apply.py [-n 128] [--methods lrp,gradcam] [--validity]``.

Measured 2026-12-05 on the shared 2-core CPU machine (load 6 to 13), 1 thread, Grad-CAM on the grid:
``-n 128`` without validity: fresh 54.1 s, rerun 0.43 s, Apply 24.6 s (label in vocabulary) and 28.8 s (new
label), one image alone 1.06 s: Apply is 23x and 27x one image, because it attributes all 128 images of
the chunk again (``attr:gradcam`` 128) where 1 was edited. ``-n 32 --validity``: fresh 72.9 s, Apply 60.2 s
and 36.0 s, one image alone 1.9 s (32x and 19x): validity is also recomputed for the whole chunk.

After the per-image reuse (issue 21, deliver 3), same machine (load high: 7 engineers on 2 cores), 1 thread,
each line's before and after in separate runs, ratios within one run:
``-n 24 --chunk-size 24 --methods gradcam --validity``: before, Apply 22.9 s (label in vocabulary) and 30.2 s
(new label) against fresh 27.1 s and one image alone 2.9 s (7.8x and 10.3x one image; ``attr:gradcam`` 24,
``validity`` 24); after, 2.2 s and 19.5 s against fresh 26.3 s and one image alone 1.6 s (1.3x and 12.0x;
``attr:gradcam`` 1 and 1, ``validity`` 1 and 24: a new label changes the validity key, which holds the
vocabulary, so every record is computed again). ``-n 24 --methods lrp,gradcam`` (no validity), after: Apply
3.7 s and 3.6 s, one image alone 4.4 s, fresh 113.9 s (0.8x one image, 0.03x fresh; one image attributed).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import photo_variants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--chunk-size", type=int, default=128)
    ap.add_argument("--methods", default="lrp,gradcam")
    ap.add_argument("--regions", default="grid")
    ap.add_argument("--validity", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from semcontrib.corpus import Corpus
    from semcontrib.edits import add_edits, make_edit
    from semcontrib.pipeline import analyze

    work = Path(tempfile.mkdtemp(prefix="bench-edit-"))
    folder = work / "photos"
    folder.mkdir()
    photo_variants(folder, args.n)
    settings = {"model": "imagenet-heads", "methods": args.methods.split(","), "regions": args.regions,
                "validity": args.validity, "chunk_size": args.chunk_size, "workers": 0}
    out = work / "corpus"

    def timed(what: str, inputs, root: Path) -> float:
        t0 = time.perf_counter()
        rep = analyze(inputs, root, **settings)
        dt = time.perf_counter() - t0
        print(f"{what:28s} {dt:8.2f} s   computed {json.dumps(rep.computed)}", flush=True)
        return dt

    fresh = timed("fresh", folder, out)
    rerun = timed("rerun", folder, out)
    corpus = Corpus.open(out)
    row = corpus.images[corpus.images["status"] == "ok"].iloc[len(corpus.images) // 2]
    w, h = int(row["width"]), int(row["height"])
    name = Path(str(row["path"])).name

    def edit(label: str):
        return make_edit(image_id=str(row["image_id"]), file_name=name, width=w, height=h, label=label,
                         polygon=[[w * 0.2, h * 0.2], [w * 0.6, h * 0.2], [w * 0.6, h * 0.6], [w * 0.2, h * 0.6]])

    add_edits(out, [edit(corpus.vocabulary[0])])
    same = timed("apply, label in vocabulary", folder, out)
    add_edits(out, [edit("eyes")])
    grown = timed("apply, new label", folder, out)
    one = timed("one image alone", [str(row["path"])], work / "one")
    print(f"\n{args.n} images in chunks of {args.chunk_size}, methods {args.methods}, regions {args.regions}, "
          f"validity {args.validity}, {args.threads} threads")
    for what, dt in (("apply, label in vocabulary", same), ("apply, new label", grown)):
        print(f"{what:28s} {dt / one:6.1f}x one image alone, {dt / fresh:5.2f}x fresh, "
              f"{(dt - rerun) / max(one - rerun, 1e-9):6.1f}x one image alone above the rerun floor")


if __name__ == "__main__":
    main()
