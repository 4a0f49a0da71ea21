"""Model construction, checkpoints and weights handling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from semcontrib.backbones import MissingWeightsError, load_state_dict_file
from semcontrib.model import (
    HeadAdapter,
    HeadSpec,
    build_multitask,
    load_checkpoint,
    load_model,
    predict,
    save_checkpoint,
)
from semcontrib.paths import data_path


def test_checkpoint_round_trip_keeps_dotted_names_and_predictions(tmp_path):
    heads = [HeadSpec("nature", ("nature", "non_nature")), HeadSpec("landscape", ("a", "b", "c"))]
    model = build_multitask("efficientnet_lite0", heads, random_init=True).eval()
    sidecar = save_checkpoint(model, tmp_path / "models" / "lite0.v2", extra={"label_mapping": {"x": 1}})
    assert sidecar.name == "lite0.v2.json" and (tmp_path / "models" / "lite0.v2.safetensors").is_file()
    meta = json.loads(sidecar.read_text())
    assert meta["backbone"] == "efficientnet_lite0" and meta["heads"][1]["classes"] == ["a", "b", "c"]
    again = load_model(str(tmp_path / "models" / "lite0.v2"))
    x = torch.randn(2, 3, 224, 224)
    a, b = predict(model, x), predict(again, x)
    for h in ("nature", "landscape"):
        np.testing.assert_array_equal(a.logits[h], b.logits[h])
    assert load_checkpoint(sidecar).head_names == ["nature", "landscape"]


def test_checkpoint_without_sidecar_or_with_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "pickle-me"}))
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_checkpoint(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="neither an embedded model"):
        load_model("no-such-model")


def test_state_dict_loading_refuses_pickled_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"w": Evil()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_state_dict_file(path)


def test_missing_torchvision_weights_name_the_path(tmp_path):
    with pytest.raises(MissingWeightsError, match="resnet18.*--weights"):
        build_multitask("resnet18", [HeadSpec("t", ("a", "b"))])
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "r18.pth")):
        build_multitask("resnet18", [HeadSpec("t", ("a", "b"))], pretrained_weights=tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_multitask("vgg11", [HeadSpec("t", ("a", "b"))])


def test_class_groups_partition_imagenet():
    groups = json.loads(data_path("imagenet_class_groups.json").read_text())
    assert len(groups["imagenet_classes"]) == 1000
    for head, gs in groups["heads"].items():
        members = sorted(i for g in gs.values() for i in g)
        assert members == list(range(1000)), head


def test_imagenet_heads_carry_the_studys_four_tasks():
    """material (screens, text, printed depictions are immaterial) and landscape's wetlands (wetland fauna)."""
    groups = json.loads(data_path("imagenet_class_groups.json").read_text())
    heads, names = groups["heads"], groups["imagenet_classes"]
    assert list(heads) == ["nature", "biotic", "material", "landscape"]
    assert list(heads["material"]) == ["material", "immaterial"]
    immaterial = {names[i] for i in heads["material"]["immaterial"]}
    assert {"web site", "comic book", "television", "monitor", "menu", "crossword puzzle"} <= immaterial
    assert not immaterial & {"lakeside", "tabby", "daisy", "castle", "teddy"}
    assert list(heads["landscape"]) == ["artificial_surfaces", "agricultural_areas", "forests_semi_natural",
                                        "wetlands", "water_bodies", "other_none"]
    wetlands = {names[i] for i in heads["landscape"]["wetlands"]}
    assert {"spoonbill", "little blue heron", "American alligator", "bittern"} <= wetlands
    assert not wetlands & {"lakeside", "seashore", "water buffalo"}


def test_group_heads_are_logsumexp_of_their_classes():
    model = load_model("imagenet-heads")
    assert model.head_names == ["nature", "biotic", "material", "landscape", "imagenet"]
    x = torch.randn(1, 3, 224, 224)
    out = predict(model, x)
    p = torch.softmax(torch.from_numpy(out.logits["imagenet"]), 1)[0].numpy()
    groups = json.loads(data_path("imagenet_class_groups.json").read_text())["heads"]["nature"]
    expected = [p[groups["nature"]].sum(), p[groups["non_nature"]].sum()]
    np.testing.assert_allclose(out.probabilities("nature")[0], expected, rtol=1e-4)
    adapter = HeadAdapter(model, "biotic")
    assert adapter(x).shape == (1, 2)
    with pytest.raises(ValueError, match="unknown head"):
        HeadAdapter(model, "no_such_head")


def test_the_model_package_re_exports_every_public_name_of_its_modules():
    """``semcontrib.model`` was one module: every name defined in its parts stays importable from it."""
    import importlib
    import pkgutil

    import semcontrib.model as package

    parts = [m.name for m in pkgutil.iter_modules(package.__path__)]
    assert set(parts) == {"build", "checkpoint", "compute", "multitask", "prediction", "siam"}
    for part in parts:
        module = importlib.import_module(f"semcontrib.model.{part}")
        defined = [n for n, v in vars(module).items() if not n.startswith("_")
                   and getattr(v, "__module__", None) == module.__name__]
        missing = [n for n in defined if getattr(package, n, None) is not getattr(module, n)]
        assert not missing, f"semcontrib.model does not re-export {part}.{missing}"
    assert set(package.__all__) <= set(vars(package))


def test_compute_options_docstring_example_runs():
    import doctest

    import semcontrib.model.compute as compute

    result = doctest.testmod(compute)
    assert result.attempted > 0
    assert result.failed == 0
