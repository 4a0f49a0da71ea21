"""Regenerate the golden end-to-end numbers (deliberately): ``python tests/golden/regenerate.py``.

Analyses three bundled photographs with the real EfficientNet-Lite0 ``imagenet-heads`` model, every
method (IG with 8 steps) and the 3x3 grid, and records predictions and signed_l1 contribution vectors.
Also rewrites ``SHA256SUMS`` so that the test notices any hand edit.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
PHOTOS = ("chelsea", "coffee", "astronaut")
# recorded with LRP-epsilon (the default composite before docs/trust.md chose epsilon_gamma_box)
SETTINGS = {"methods": ["lrp", "gradcam", "ig"],
            "method_params": {"ig": {"n_steps": 8}, "lrp": {"composite": "epsilon"}},
            "regions": "grid", "batch_size": 3, "validity": False}


def compute(workdir: Path) -> dict:
    from PIL import Image

    from semcontrib.corpus import Corpus
    from semcontrib.demo import DEMO_IMAGES
    from semcontrib.pipeline import analyze

    folder = workdir / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(DEMO_IMAGES[name][0]()).save(folder / f"{name}.png")
    analyze(folder, workdir / "corpus", **SETTINGS)  # type: ignore[arg-type]
    c = Corpus.open(workdir / "corpus")
    preds = {r.path.split("/")[-1][:-4]: {h: getattr(r, f"pred_{h}") for h in c.heads}
             for r in c.images.itertuples()}
    wide = c.contribution_table(wide=True)
    wide["photo"] = wide["image_id"].str.rsplit("-", n=1).str[0]
    scores = {f"{r['photo']}/{r['head']}/{r['method']}": [round(float(r[v]), 6) for v in c.vocabulary]
              for _, r in wide.iterrows()}
    return {"settings": SETTINGS, "vocabulary": c.vocabulary, "predictions": preds, "signed_l1": scores}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        golden = compute(Path(tmp))
    path = HERE / "e2e_lite0_grid.json"
    path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (HERE / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")
    print(f"wrote {path} ({digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
