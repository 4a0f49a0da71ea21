"""The ``train`` and ``evaluate`` subcommands, end to end on the sample set (features cached)."""

from __future__ import annotations

import argparse
import json

import pytest
from filelock import FileLock

from semcontrib.training.cli import main, register


def test_register_adds_train_and_evaluate():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["train", "imgs", "l.csv", "--out", "m", "--freeze-backbone", "--epochs", "3"])
    assert args.func.__name__ == "run_train" and args.epochs == 3 and args.freeze_backbone
    args = parser.parse_args(["evaluate", "--compare", "a", "b"])
    assert args.func.__name__ == "run_evaluate" and args.compare == ["a", "b"]


def test_train_evaluate_compare(sample_data, tmp_path, capsys):
    model = tmp_path / "m"
    with FileLock(str(sample_data.cache.parent / "features.lock")):
        rc = main(["train", str(sample_data.images), str(sample_data.labels), "--out", str(model),
                   "--freeze-backbone", "--views", "1", "--cache-dir", str(sample_data.cache), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "held-out test split" in out and "stratified:joint" in out
    assert (tmp_path / "m.json").is_file() and (tmp_path / "m.safetensors").is_file()
    assert (tmp_path / "m_report" / "report.html").is_file()
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["training"]["freeze_backbone"] is True

    rc = main(["evaluate", str(model), str(sample_data.images), str(sample_data.labels), "--out",
               str(tmp_path / "ev"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "subset: test" in out
    rc = main(["evaluate", "--compare", str(tmp_path / "ev"), str(tmp_path / "m_report"), "--out",
               str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert rc == 0 and "mean_accuracy" in out
    assert (tmp_path / "cmp" / "comparison.csv").is_file()


def test_missing_weights_and_bad_input_exit_2_with_a_message(sample_data, tmp_path, capsys):
    rc = main(["train", str(sample_data.images), str(sample_data.labels), "--out", str(tmp_path / "m"),
               "--backbone", "resnet18", "--freeze-backbone", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--weights" in err
    rc = main(["train", str(sample_data.images), str(sample_data.labels), "--out", str(tmp_path / "m"),
               "--backbone", "resnet18", "--weights", str(tmp_path / "absent.pth"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "absent.pth" in err
    rc = main(["train", str(sample_data.images), str(tmp_path / "nope.csv"), "--out", str(tmp_path / "m"),
               "--quiet"])
    assert rc == 2 and "nope.csv" in capsys.readouterr().err
    rc = main(["evaluate", str(tmp_path / "absent"), str(sample_data.images), str(sample_data.labels)])
    assert rc == 2
    assert main(["evaluate"]) == 2
    with pytest.raises(SystemExit):
        main(["train", "x", "y"])  # --out is required


def test_compare_prints_one_table_across_backbones(tmp_path, capsys):
    import numpy as np

    from semcontrib.training.evaluation import evaluate_logits, write_report

    targets = np.array([[0], [1], [1], [0]])
    for backbone, ms, z in (("efficientnet_lite0", 10.0, [[2.0, 0], [0, 2], [0, 2], [2, 0]]),
                            ("efficientnet_lite2", 25.0, [[1.0, 0], [0, 1], [1, 0], [1, 0]])):
        report = evaluate_logits({"t": np.array(z)}, targets, ["t"], {"t": ("a", "b")},
                                 meta={"backbone": backbone, "ms_per_image": ms, "device": "cpu", "subset": "test"})
        write_report(report, tmp_path / backbone)
    rc = main(["evaluate", "--compare", str(tmp_path / "efficientnet_lite0"), str(tmp_path / "efficientnet_lite2"),
               "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert rc == 0
    header = next(line for line in out.splitlines() if line.startswith("| report"))
    for col in ("test_loss", "mean_accuracy", "mean_f1", "ms_per_image", "t accuracy"):
        assert col in header
    rows = [line for line in out.splitlines() if line.startswith("| ") and "efficientnet_lite" in line]
    assert len(rows) == 2 and "25.000" in rows[1] and "0.750" in rows[1]


def test_train_on_a_label_studio_export_reports_the_skipped_tasks(sample_data, tmp_path, capsys):
    """48 crops labelled in Label Studio (nature and biotic choices, upload prefixes), one task left
    unannotated and one with a choice the project does not have: the model trains, and both are reported.
    A task whose three annotators disagree 2:1 keeps the majority's choice (the documented rule)."""
    import hashlib

    import pandas as pd

    labels = pd.read_csv(sample_data.labels, dtype=str, keep_default_na=False).head(48)
    tasks = []
    for k, row in enumerate(labels.itertuples()):
        name = next(p.name for p in sample_data.images.iterdir() if p.stem == row.image_id)
        prefix = hashlib.sha256(name.encode()).hexdigest()[:8]
        result = [{"type": "choices", "from_name": t, "to_name": "image", "value": {"choices": [getattr(row, t)]}}
                  for t in ("nature", "biotic")]
        if k == 5:
            result = []
        if k == 9:
            result[0]["value"]["choices"] = ["maybe"]
        annotations = [{"id": k, "result": result}] if result else []
        if k == 13:  # two annotators agree, a third does not: the majority wins
            other = [{**r, "value": {"choices": ["abiotic" if r["value"]["choices"] == ["biotic"] else "biotic"]}}
                     if r["from_name"] == "biotic" else r for r in result]
            annotations = [{"id": 100, "result": result}, {"id": 101, "result": other},
                           {"id": 102, "result": result}]
        tasks.append({"id": 1000 + k, "data": {"image": f"/data/upload/2/{prefix}-{name}"},
                      "annotations": annotations})
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    config = tmp_path / "config.xml"
    config.write_text('<View><Image name="image" value="$image"/>'
                      '<Choices name="nature" toName="image"><Choice value="nature"/><Choice value="non-nature"/>'
                      '</Choices><Choices name="biotic" toName="image"><Choice value="biotic"/>'
                      '<Choice value="abiotic"/></Choices></View>')
    with FileLock(str(sample_data.cache.parent / "features.lock")):
        rc = main(["train", str(sample_data.images), str(export), "--label-config", str(config),
                   "--out", str(tmp_path / "m"), "--views", "1", "--cache-dir", str(sample_data.cache), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    unannotated, unknown = tasks[5]["data"]["image"].split("/")[-1], tasks[9]["data"]["image"].split("/")[-1]
    assert "2 Label Studio tasks skipped:" in out
    assert f"task 1005 ({unannotated}): no annotation" in out
    assert f"task 1009 ({unknown}): choice maybe is not a class of nature (nature, non-nature)" in out
    meta = json.loads((tmp_path / "m.json").read_text())
    assert [(h["name"], h["classes"]) for h in meta["heads"]] == [("nature", ["nature", "non-nature"]),
                                                                  ("biotic", ["biotic", "abiotic"])]
    assert meta["training"]["n_examples"] == 46
    assert len(meta["training"]["label_report"]["skipped_tasks"]) == 2
    report = json.loads((tmp_path / "m_report" / "report.json").read_text())
    assert report["n_examples"] >= 1
    # evaluate reads the export the same way, the checkpoint's classes being the allowed choices
    rc = main(["evaluate", str(tmp_path / "m"), str(sample_data.images), str(export), "--subset", "all",
               "--out", str(tmp_path / "ev"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"task 1009 ({unknown}): choice maybe is not a class of nature (nature, non-nature)" in out
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["n_examples"] == 46
