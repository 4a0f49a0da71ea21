"""Build ``landscape_annotations.coco.json``: hand-drawn landscape regions of bundled photographs.

Run deliberately (``python data/build/landscape_annotations_build.py``); the output is committed.

The polygons were placed by eye on coordinate-grid overlays of each photograph (x to the right,
y down, pixels of the original image). They are drawn conservatively *inside* each region; pixels
near boundaries are left unannotated and are not scored. Category ``void`` marks areas deliberately
excluded from scoring (the espresso itself: a drink is neither built nor other in a clear way).
Labels follow the landscape vocabulary: worn clothing and hats count as ``person``; flags, models,
helmets, furniture, crockery and launch structures as ``built``; studio backdrops as ``other``.
Photographs: scikit-image ``chelsea``, ``coffee``, ``astronaut``, ``rocket``; scikit-learn
``china.jpg``, ``flower.jpg``; matplotlib ``grace_hopper.jpg``.
"""

from __future__ import annotations

import json
from pathlib import Path

VOCAB = ["sky", "water", "vegetation", "bare_ground", "built", "person", "animal", "other", "void"]

IMAGES = {
    "china.jpg": ((427, 640), {
        "sky": [[(0, 0), (190, 0), (190, 80), (100, 100), (85, 140), (0, 140)],
                [(225, 0), (640, 0), (640, 125), (590, 128), (565, 170), (545, 195), (335, 195),
                 (332, 160), (300, 125), (270, 88), (225, 55)]],
        "water": [[(345, 245), (545, 245), (545, 272), (480, 285), (420, 298), (362, 312), (352, 300)],
                  [(5, 268), (55, 268), (55, 290), (5, 290)]],
        "built": [[(198, 38), (214, 38), (222, 78), (295, 112), (312, 128), (292, 140), (322, 170),
                   (316, 195), (322, 238), (342, 256), (334, 276), (338, 318), (360, 334), (335, 356),
                   (305, 378), (240, 372), (200, 360), (160, 338), (80, 330), (84, 300), (68, 272),
                   (72, 252), (104, 236), (102, 195), (92, 180), (104, 160), (100, 132), (104, 110),
                   (132, 98), (182, 72)]],
        "vegetation": [[(580, 145), (610, 138), (640, 142), (640, 427), (365, 427), (365, 365),
                        (400, 325), (450, 305), (520, 290), (552, 268), (552, 230), (562, 185)],
                       [(0, 165), (28, 155), (58, 192), (66, 228), (40, 248), (0, 248)],
                       [(0, 345), (55, 338), (140, 352), (195, 378), (255, 405), (262, 427), (0, 427)]],
    }),
    "rocket.jpg": ((427, 640), {
        "sky": [[(95, 0), (300, 0), (300, 330), (212, 330), (206, 128), (188, 118), (180, 330), (95, 330)],
                [(342, 0), (556, 0), (556, 330), (468, 330), (458, 190), (452, 118), (440, 118),
                 (434, 330), (342, 330)],
                [(300, 0), (342, 0), (342, 118), (300, 118)]],
        "built": [[(312, 140), (330, 140), (333, 398), (308, 398)],
                  [(268, 408), (378, 408), (378, 427), (268, 427)]],
    }),
    "astronaut.png": ((512, 512), {
        "person": [[(162, 22), (288, 22), (298, 100), (268, 158), (182, 158), (152, 100)],
                   [(42, 255), (112, 230), (160, 272), (230, 292), (300, 272), (342, 255), (352, 330),
                    (300, 358), (282, 400), (268, 512), (42, 512), (32, 400)]],
        "built": [[(0, 0), (52, 0), (88, 178), (55, 238), (25, 298), (0, 298)],
                  [(382, 12), (428, 12), (440, 62), (468, 150), (458, 255), (362, 255), (372, 160),
                   (392, 100)],
                  [(302, 372), (380, 348), (458, 362), (498, 420), (505, 512), (288, 512), (288, 432)]],
        "other": [[(68, 0), (148, 0), (140, 118), (112, 175), (96, 120)],
                  [(308, 0), (372, 0), (362, 150), (348, 240), (312, 180), (302, 100)],
                  [(470, 275), (512, 275), (512, 335), (470, 335)]],
    }),
    "grace_hopper.jpg": ((600, 512), {
        "person": [[(158, 45), (348, 35), (368, 140), (358, 278), (318, 332), (212, 332), (168, 280),
                    (152, 150)],
                   [(62, 362), (200, 335), (330, 342), (420, 362), (488, 402), (498, 600), (32, 600),
                    (42, 452)]],
        "built": [[(0, 0), (138, 0), (146, 298), (136, 336), (58, 352), (18, 412), (0, 412)]],
        "other": [[(382, 0), (512, 0), (512, 345), (452, 352), (392, 325), (382, 120)]],
    }),
    "chelsea.png": ((300, 451), {
        "animal": [[(0, 0), (328, 0), (352, 50), (342, 120), (352, 200), (348, 300), (0, 300)]],
        "other": [[(388, 0), (451, 0), (451, 198), (402, 198), (388, 100)]],
    }),
    "coffee.png": ((400, 600), {
        "built": [[(0, 0), (600, 0), (600, 400), (0, 400)]],
        "void": [[(205, 105), (280, 92), (350, 100), (372, 140), (355, 185), (280, 198), (215, 188),
                  (198, 145)]],
    }),
    "flower.jpg": ((427, 640), {
        "vegetation": [[(0, 0), (640, 0), (640, 427), (0, 427)]],
    }),
}


def build() -> dict:
    images, annotations = [], []
    for i, (name, ((h, w), regions)) in enumerate(IMAGES.items(), start=1):
        images.append({"id": i, "file_name": name, "height": h, "width": w})
        for label, polys in regions.items():
            annotations.append({
                "id": len(annotations) + 1, "image_id": i, "category_id": VOCAB.index(label) + 1,
                "segmentation": [[float(v) for xy in poly for v in xy] for poly in polys], "iscrowd": 0,
            })
    return {"info": {"description": __doc__.strip().splitlines()[0]},
            "images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(VOCAB)]}


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "landscape_annotations.coco.json"
    out.write_text(json.dumps(build(), indent=1))
    print(f"wrote {out}")
