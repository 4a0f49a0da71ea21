"""Labels: ids, paths, bad labels as counts, structural errors."""

from __future__ import annotations

import pytest

from semcontrib.training import (
    read_labels,
)
from tests.training.helpers import write_images

# --------------------------------------------------------------------------- labels


def test_ids_match_with_or_without_extension_and_subfolders(tmp_path):
    write_images(tmp_path / "img", ["a.jpg", "b.png", "c.jpeg"])
    write_images(tmp_path / "img" / "sub", ["d.jpg"])
    (tmp_path / "l.csv").write_text("image_id,nature\na.jpg,yes\nb,no\nsub/d,yes\nc.jpeg,no\n")
    ls = read_labels(tmp_path / "l.csv", tmp_path / "img")
    assert [p.name for p in ls.paths] == ["a.jpg", "b.png", "d.jpg", "c.jpeg"]
    assert ls.classes == {"nature": ("no", "yes")}
    assert ls.targets[:, 0].tolist() == [1, 0, 1, 0]
    assert ls.report.n_problems == 0


def test_path_column(tmp_path):
    write_images(tmp_path / "img", ["a.jpg", "b.jpg"])
    (tmp_path / "l.csv").write_text(f"path,t\na.jpg,x\n{tmp_path / 'img' / 'b.jpg'},y\nnope.jpg,x\n")
    ls = read_labels(tmp_path / "l.csv", tmp_path / "img")
    assert len(ls) == 2
    assert ls.report.counts["missing_image"] == 1


def test_bad_labels_give_a_report_of_counts_not_a_crash(tmp_path):
    img = tmp_path / "img"
    write_images(img, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "amb.jpg", "amb.png",
                        "extra.jpg"])
    (img / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "l.csv").write_text(
        "image_id,nature,landscape\n"
        "a,nature,forest\n"
        "b,non-nature,urban\n"
        "c,nature,\n"            # empty cell
        "d,non-nature,urban\n"
        "e,nature,water\n"       # water: single-example class
        "f,,\n"                  # no label at all
        "ghost,nature,urban\n"   # unknown id
        "amb,nature,urban\n"     # ambiguous id
        "a,nature,forest\n"      # duplicate
        ",nature,urban\n"        # empty id
        "broken,nature,forest\n"
    )
    ls = read_labels(tmp_path / "l.csv", img)
    c = ls.report.counts
    assert c["empty_cell"] == 3  # c's landscape, f's two cells
    assert c["no_label"] == 1
    assert c["unknown_id"] == 1 and ls.report.examples["unknown_id"] == ["ghost"]
    assert c["ambiguous_id"] == 1
    assert c["duplicate_id"] == 1
    assert c["empty_id"] == 1
    assert c["unlabelled_image"] == 3  # extra.jpg and the two amb files
    assert ls.report.single_example_classes == {"landscape": ["water"]}
    assert ls.image_ids == ["a", "b", "c", "d", "e", "broken"]
    assert ls.targets[2].tolist() == [0, -1]
    # unknown classes: against a checkpoint's classes (evaluation)
    ls2 = read_labels(tmp_path / "l.csv", img, classes={"nature": ("nature", "non-nature"),
                                                        "landscape": ("forest", "urban")})
    assert ls2.report.counts["unknown_class"] == 1
    assert ls2.report.unknown_classes == {"landscape": {"water": 1}}
    # a task with a single class is dropped and reported, the others train
    (tmp_path / "one.csv").write_text("image_id,nature,constant\na,nature,x\nb,non-nature,x\n")
    ls3 = read_labels(tmp_path / "one.csv", img)
    assert ls3.tasks == ["nature"] and "constant" in ls3.report.dropped_tasks


def test_structural_csv_errors_are_specific(tmp_path):
    write_images(tmp_path / "img", ["a.jpg"])
    (tmp_path / "noid.csv").write_text("name,t\na,x\n")
    with pytest.raises(ValueError, match="image_id"):
        read_labels(tmp_path / "noid.csv", tmp_path / "img")
    (tmp_path / "l.csv").write_text("image_id,t\na,x\n")
    with pytest.raises(ValueError, match="task columns"):
        read_labels(tmp_path / "l.csv", tmp_path / "img", tasks=["missing"])
    with pytest.raises(ValueError, match="two classes"):
        read_labels(tmp_path / "l.csv", tmp_path / "img")
    with pytest.raises(FileNotFoundError):
        read_labels(tmp_path / "absent.csv", tmp_path / "img")


# --------------------------------------------------------------------------- Label Studio exports


def _ls_task(tid, image, **choices):
    result = [{"type": "choices", "from_name": t, "to_name": "image", "value": {"choices": [c]}}
              for t, c in choices.items()]
    return {"id": tid, "data": {"image": f"/data/upload/7/{image}"},
            "annotations": [{"result": result}] if result else []}


def test_label_studio_export_matches_prefixed_uploads_and_reports_skipped_tasks(tmp_path):
    import json

    write_images(tmp_path / "img", ["a.jpg", "b.jpg", "c.jpg", "0f0f0f0f-d.jpg"])
    tasks = [_ls_task(1, "1a2b3c4d-a.jpg", nature="yes", biotic="b"), _ls_task(2, "99999999-b.jpg", nature="no"),
             _ls_task(3, "abcdef01-c.jpg"), _ls_task(4, "0f0f0f0f-d.jpg", nature="yes", biotic="a"),
             _ls_task(5, "12121212-e.jpg", nature="no", biotic="a")]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    ls = read_labels(tmp_path / "export.json", tmp_path / "img")
    assert [p.name for p in ls.paths] == ["a.jpg", "b.jpg", "0f0f0f0f-d.jpg"]
    assert ls.tasks == ["nature", "biotic"] and ls.classes == {"nature": ("no", "yes"), "biotic": ("a", "b")}
    assert ls.targets.tolist() == [[1, 1], [0, -1], [1, 0]]
    assert ls.report.skipped_tasks == ["task 3 (abcdef01-c.jpg): no annotation"]
    assert ls.report.counts["skipped_task"] == 1 and ls.report.counts["unknown_id"] == 1  # e.jpg: no file
    with pytest.raises(ValueError, match="a group column needs a labels CSV"):
        read_labels(tmp_path / "export.json", tmp_path / "img", group_column="g")
