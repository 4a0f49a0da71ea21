"""Build ``part_annotations.coco.json``: hand-drawn parts (eyes, nose, mouth, face, ear) of bundled photographs.

Run deliberately (``python data/build/part_annotations_build.py``); the output is committed.
``python data/build/part_annotations_build.py --overlay DIR`` also writes each photograph with its
polygons drawn over it, to check them by eye.

The polygons were placed by eye on zoomed coordinate-grid crops of each photograph (x to the right,
y down, pixels of the original image), following each part's outline: an eye is the visible eyeball
between the lids, the nose runs from the bridge between the eyes to the nostrils, the mouth is the lips
(teeth included), and the face is the skin from the hairline (or the cap) to the chin, inside the
cheeks (ears and hair excluded); glasses are ignored. ``face`` is drawn around the other parts; the
smaller-wins rule of the annotation reader gives the eyes, nose and mouth their pixels, so the
``face`` region is the skin around them.

Left and right are the **subject's own**: ``left_eye`` is the subject's left eye, which is on the
picture's right for a subject facing the camera (the convention of dlib's 68 landmarks and of the
``faces`` source). Photographs: scikit-image ``chelsea`` (the cat: both eyes, the nose and the
subject's left ear; the right ear is out of the picture), ``astronaut``; matplotlib
``grace_hopper.jpg``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VOCAB = ["face", "left_ear", "left_eye", "mouth", "nose", "right_eye"]

IMAGES = {
    "chelsea.png": ((300, 451), {
        "right_eye": [[(134, 113), (140, 97), (152, 88), (167, 85), (183, 88), (197, 96), (206, 108), (208, 122),
                       (203, 134), (192, 143), (176, 147), (160, 145), (146, 137), (137, 126)]],
        "left_eye": [[(297, 125), (303, 116), (314, 111), (327, 111), (337, 115), (343, 125), (343, 138),
                      (338, 150), (328, 160), (315, 163), (304, 158), (298, 148), (295, 137)]],
        "nose": [[(229, 229), (248, 226), (268, 228), (288, 226), (293, 231), (286, 241), (274, 252), (262, 261),
                  (255, 264), (250, 256), (243, 246), (234, 238)]],
        "left_ear": [[(328, 0), (394, 0), (388, 15), (376, 32), (362, 50), (348, 58), (336, 50), (330, 30)]],
    }),
    "astronaut.png": ((512, 512), {
        "right_eye": [[(192, 101), (197, 98), (203, 97), (209, 99), (212, 102), (207, 105), (200, 106), (195, 104)]],
        "left_eye": [[(236, 103), (241, 100), (248, 99), (254, 101), (257, 104), (251, 107), (244, 107),
                      (239, 106)]],
        "nose": [[(221, 104), (229, 104), (233, 115), (237, 124), (238, 131), (232, 134), (226, 135), (219, 134),
                  (214, 131), (215, 124), (218, 115)]],
        "mouth": [[(203, 141), (212, 140), (224, 140), (236, 140), (245, 139), (241, 146), (232, 152), (222, 154),
                   (212, 151), (206, 146)]],
        "face": [[(190, 84), (215, 80), (240, 82), (262, 90), (268, 105), (266, 120), (262, 135), (256, 150),
                  (246, 163), (232, 172), (218, 174), (204, 168), (193, 155), (186, 138), (184, 120), (185, 100)]],
    }),
    "grace_hopper.jpg": ((600, 512), {
        "right_eye": [[(206, 190), (214, 185), (225, 183), (236, 185), (243, 190), (236, 195), (225, 197),
                       (214, 195)]],
        "left_eye": [[(286, 189), (294, 184), (305, 181), (316, 183), (323, 188), (315, 193), (304, 195),
                      (293, 193)]],
        "nose": [[(256, 195), (276, 195), (280, 215), (286, 232), (294, 242), (292, 252), (278, 256), (266, 252),
                  (254, 255), (241, 251), (239, 241), (247, 231), (252, 215)]],
        "mouth": [[(225, 279), (240, 273), (258, 269), (275, 270), (292, 270), (310, 278), (298, 286), (278, 291),
                   (258, 291), (238, 287)]],
        "face": [[(178, 152), (265, 146), (345, 152), (350, 175), (348, 215), (346, 255), (340, 290), (325, 315),
                  (300, 332), (265, 338), (235, 333), (212, 318), (195, 295), (184, 260), (180, 215), (178, 175)]],
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


def overlay(folder: Path) -> None:
    """Each photograph with its polygons drawn over it (3x, outlines), for checking by eye."""
    from PIL import Image, ImageDraw

    from semcontrib.segmentation.metrics import load_bundled_photograph

    colours = {"face": (255, 255, 0), "left_eye": (0, 255, 0), "right_eye": (255, 0, 255),
               "nose": (0, 255, 255), "mouth": (255, 0, 0), "left_ear": (0, 128, 255)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, (_, regions) in IMAGES.items():
        s = 3
        im = Image.fromarray(load_bundled_photograph(name))
        im = im.resize((im.width * s, im.height * s), Image.Resampling.NEAREST)
        d = ImageDraw.Draw(im)
        for label, polys in regions.items():
            for poly in polys:
                d.polygon([(x * s, y * s) for x, y in poly], outline=colours[label], width=2)
        im.save(folder / f"{Path(name).stem}_parts.png")


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "part_annotations.coco.json"
    out.write_text(json.dumps(build(), indent=1))
    print(f"wrote {out}")
    if len(sys.argv) == 3 and sys.argv[1] == "--overlay":
        overlay(Path(sys.argv[2]))
