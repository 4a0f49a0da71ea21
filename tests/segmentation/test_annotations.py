"""The annotations source: COCO, Label Studio and PNG label maps on one vocabulary."""

import json

import numpy as np
import pytest
from PIL import Image

from semcontrib.regions import ImageInput
from semcontrib.segmentation import make_region_source
from semcontrib.segmentation.annotations import (
    AnnotationSource,
    box_to_mask,
    percent_to_pixels,
    polygons_to_mask,
    rotated_rectangle,
)
from semcontrib.segmentation.rle import coco_rle_encode, mask_to_brush_rle

H, W = 20, 30


def _img(name, h=H, w=W, image_id=None):
    return ImageInput(image_id or name, np.zeros((h, w, 3), np.uint8), path=f"/photos/{name}")


def _coco(tmp_path):
    eye = np.zeros((H, W), bool)
    eye[5:8, 5:9] = True
    nose = np.zeros((H, W), bool)
    nose[10:12, 14:16] = True
    data = {
        "images": [{"id": 1, "file_name": "cat.jpg", "height": H, "width": W},
                   {"id": 2, "file_name": "dog.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "Body"}, {"id": 2, "name": "Eye"}, {"id": 3, "name": "Nose"},
                       {"id": 4, "name": "Ear"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 30, 0, 30, 20, 0, 20]]},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": coco_rle_encode(eye)},
            {"id": 3, "image_id": 1, "category_id": 3, "segmentation": coco_rle_encode(nose, compressed=False)},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},
        ],
    }
    p = tmp_path / "ann.coco.json"
    p.write_text(json.dumps(data))
    return p, eye, nose


def test_coco_polygons_and_rle(tmp_path):
    path, eye, nose = _coco(tmp_path)
    src = make_region_source(f"annotations:{path}")
    assert src.vocabulary == ("Body", "Ear", "Eye", "Nose")  # sorted, includes unused categories
    rm = src.segment(_img("cat.jpg"))
    names = np.array(rm.names)
    assert (names[rm.labels[eye]] == "Eye").all()  # smaller wins over the body polygon
    assert (names[rm.labels[nose]] == "Nose").all()
    assert (rm.labels >= 0).all()
    rm2 = src.segment(_img("dog.png", image_id="2"))
    assert rm2.names == rm.names  # same vocabulary for every image
    assert (rm2.labels[:10, :10] == 0).all() and (rm2.labels[10:] == -1).all()


def test_match_by_image_id_and_missing(tmp_path):
    path, _, _ = _coco(tmp_path)
    src = AnnotationSource(path)
    assert src.lookup(ImageInput("2", np.zeros((H, W, 3), np.uint8))) is not None
    with pytest.raises(ValueError, match="'nope'.*no annotations"):
        src.segment(_img("other.jpg", image_id="nope"))
    lenient = AnnotationSource(path, missing="unassigned")
    assert (lenient.segment(_img("other.jpg", image_id="nope")).labels == -1).all()


def test_size_and_orientation_mismatch(tmp_path):
    path, _, _ = _coco(tmp_path)
    src = AnnotationSource(path)
    with pytest.raises(ValueError, match="cat.jpg.*orientation"):
        src.segment(_img("cat.jpg", h=W, w=H))
    with pytest.raises(ValueError, match="cat.jpg.*size mismatch"):
        src.segment(_img("cat.jpg", h=H + 1, w=W))


def test_percent_to_pixels_and_rotation():
    assert percent_to_pixels(50, 25, 200, 100) == (100.0, 25.0)
    assert percent_to_pixels(0, 100, 640, 427) == (0.0, 427.0)
    c = rotated_rectangle(10, 20, 4, 2, 90)  # clockwise about the top-left corner (y points down)
    assert np.allclose(c, [[10, 20], [10, 24], [8, 24], [8, 20]])


def test_polygon_and_box_pixel_centres():
    m = polygons_to_mask([np.array([[0, 0], [3, 0], [3, 2], [0, 2]])], 4, 5)
    assert m.sum() == 6 and m[:2, :3].all()
    assert np.array_equal(box_to_mask((0, 0, 3, 2), 4, 5), m)


def _label_studio(tmp_path):
    brush = np.zeros((H, W), bool)
    brush[15:, 20:] = True
    tasks = [{
        "id": 7,
        "data": {"image": "/data/upload/1/0a1b2c3d-cat.jpg"},
        "annotations": [{"result": [
            {"type": "rectanglelabels", "original_width": W, "original_height": H,
             "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rotation": 0, "rectanglelabels": ["Head"]}},
            {"type": "polygonlabels", "original_width": W, "original_height": H,
             "value": {"points": [[0, 0], [10, 0], [10, 10], [0, 10]], "polygonlabels": ["Eye"]}},
            {"type": "brushlabels", "original_width": W, "original_height": H,
             "value": {"format": "rle", "rle": mask_to_brush_rle(brush), "brushlabels": ["Tail"]}},
            {"type": "keypointlabels", "original_width": W, "original_height": H,
             "value": {"x": 50, "y": 50, "width": 1, "keypointlabels": ["Nose"]}},
        ]}],
    }]
    p = tmp_path / "ls.json"
    p.write_text(json.dumps(tasks))
    return p, brush


def test_label_studio_export(tmp_path):
    path, brush = _label_studio(tmp_path)
    src = make_region_source("annotations", path=str(path))
    assert src.vocabulary == ("Eye", "Head", "Nose", "Tail")
    rm = src.segment(_img("cat.jpg"))  # matched without Label Studio's upload prefix
    names = np.array(rm.names + ("unassigned",))
    lab = names[rm.labels]  # -1 indexes "unassigned"
    # Head: x 3..18 px, y 2..12 px; Eye polygon x 0..3, y 0..2 px
    assert (lab[2:12, 3:18][lab[2:12, 3:18] != "Eye"] == "Head").all()
    assert (lab[:2, :3] == "Eye").all()
    assert (lab[brush] == "Tail").all()
    assert lab[19, 0] == "unassigned"
    assert "Nose" not in set(lab.ravel())  # points have no area


def test_png_label_maps(tmp_path):
    d = tmp_path / "maps"
    d.mkdir()
    (d / "classes.txt").write_text("unassigned\nsky\nwater\n")
    values = np.zeros((H, W), np.uint8)
    values[:10] = 1
    values[10:15] = 2
    values[15:, :5] = 255
    im = Image.fromarray(values, mode="P")
    im.putpalette([0, 0, 0, 100, 150, 255, 0, 0, 200] + [0] * 759)
    im.save(d / "lake.png")
    Image.fromarray(values).convert("RGB").save(d / "bad.png")
    src = make_region_source(f"annotations:{d}")
    assert src.vocabulary == ("sky", "water")
    rm = src.segment(_img("lake.jpg"))
    assert (rm.labels[:10] == 0).all() and (rm.labels[10:15] == 1).all() and (rm.labels[15:] == -1).all()
    with pytest.raises(ValueError, match="'bad.jpg'.*mode RGB"):
        src.segment(_img("bad.jpg"))


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        make_region_source(f"annotations:{tmp_path / 'missing.json'}")
    with pytest.raises(ValueError, match="needs a path"):
        make_region_source("annotations")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        AnnotationSource(tmp_path / "x.json")
    with pytest.raises(ValueError, match="class-name file"):
        AnnotationSource(tmp_path)
