"""wrap_model: any torch module (dict, tuple or single-tensor logits) explained end to end by analyze."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torch import nn  # noqa: E402

import semcontrib  # noqa: E402
from semcontrib.contributions import aggregate  # noqa: E402
from semcontrib.corpus import Corpus  # noqa: E402
from semcontrib.model import model_key  # noqa: E402
from semcontrib.wrap import WrappedModel, lrp_coverage, wrap_model  # noqa: E402

SIZE = 64
HEADS = {"animal": ["cat", "dog", "bird"], "indoor": ["no", "yes"]}


class ResNetTwoHeads(nn.Module):
    """torchvision ResNet-18 (random weights, built in code) with two linear heads on its 16 outputs."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = torchvision.models.resnet18(weights=None, num_classes=16)
        self.animal = nn.Linear(16, 3)
        self.indoor = nn.Linear(16, 2)
        for m in self.body.modules():  # non-trivial BatchNorm statistics, so merging them matters
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        f = self.body(x)
        return {"animal": self.animal(f), "indoor": self.indoor(f)}


class TinyConv(nn.Module):
    """conv - ReLU - conv - ReLU - pool, then ``n_heads`` linear layers returned as a tuple or one tensor."""

    def __init__(self, classes: tuple[int, ...], single: bool = False) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                                      nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleList([nn.Linear(6, c) for c in classes])
        self.single = single

    def forward(self, x):
        f = self.pool(self.features(x))
        outs = tuple(h(f) for h in self.heads)
        return outs[0] if self.single else outs


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from PIL import Image

    from semcontrib.demo import DEMO_IMAGES

    folder = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee", "astronaut"):
        Image.fromarray(DEMO_IMAGES[name][0]()).save(folder / f"{name}.png")
    return folder


def _wrapped_resnet(seed: int = 0) -> WrappedModel:
    return wrap_model(ResNetTwoHeads(seed), heads=HEADS, input_size=SIZE, gradcam_layer="body.layer4")


def _input_tensor(corpus: Corpus, image_id: str, model: WrappedModel) -> torch.Tensor:
    from semcontrib.imageio import load_rgb, resize_rgb

    path = corpus.images.set_index("image_id").loc[image_id, "path"]
    return model.preprocess(resize_rgb(load_rgb(path).rgb, SIZE))


def _zennit_reference(module: nn.Module, x: torch.Tensor, head: str, target: int) -> np.ndarray:
    """LRP-epsilon straight from zennit on the bare module (its own ResNet canonizer), summed over channels."""
    from zennit.attribution import Gradient
    from zennit.composites import LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.torchvision import ResNetCanonizer
    from zennit.types import Convolution, Linear

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module

        def forward(self, t):
            return self.module(t)[head]

    composite = LayerMapComposite(layer_map=layer_map_base() + [(Convolution, Epsilon(1e-6)), (Linear, Epsilon(1e-6))],
                                  canonizers=[ResNetCanonizer()])
    with Gradient(model=Head(), composite=composite) as attributor:
        out, rel = attributor(x.clone(), lambda z: torch.zeros_like(z).scatter(1, torch.tensor([[target]]),
                                                                               z[:, target:target + 1]))
    return rel.sum(1)[0].numpy()


@pytest.fixture(scope="module")
def resnet_run(photos, tmp_path_factory):
    model = _wrapped_resnet()
    probe = torch.randn(2, 3, SIZE, SIZE)
    before = {k: v.clone() for k, v in model.module(probe).items()}
    out = tmp_path_factory.mktemp("wrapped") / "corpus"
    report = semcontrib.analyze(photos, out, model=model, methods=["gradcam", "lrp", "ig"], regions="grid",
                                method_params={"ig": {"n_steps": 64}, "lrp": {"composite": "epsilon"}}, batch_size=3)
    return model, probe, before, report, Corpus.open(out)


def test_resnet_dict_model_end_to_end(resnet_run):
    model, _, _, report, corpus = resnet_run
    assert report.n_ok == 3 and not report.skipped
    assert corpus.heads == ["animal", "indoor"] and corpus.methods == ["gradcam", "lrp", "ig"]
    man = corpus.manifest
    assert man["model"]["key"] == model_key(model)
    assert man["model"]["weights_sha256"] == semcontrib.wrap.state_dict_sha256(model.module)
    lrp = man["methods"]["lrp"]["notes"]
    assert lrp["lrp_support"] == "rules"
    assert lrp["lrp_note"].startswith("zennit rules on 62 of 62 operations"), lrp["lrp_note"]
    assert man["methods"]["gradcam"]["notes"]["layer"] == "net.body.layer4"
    attr = corpus.attributions
    assert len(attr) == 3 * 2 * 3 and (attr["status"] == "ok").all()


def _display_scale(amap: np.ndarray) -> float:
    """The display encoding's scale: max|map|, which the int8 form keeps exactly (its extreme is +-127)."""
    return float(np.abs(amap).max())


def test_conservation_and_stored_maps(resnet_run):
    """Conservation holds exactly in the tables (statistics of the full-precision map); the stored display
    map agrees with them to its int8 resolution, scale / 254 per pixel."""
    _, _, _, _, corpus = resnet_run
    K = len(corpus.vocabulary)
    c = corpus.contributions.set_index(["image_id", "head", "method"]).sort_values("region_index")
    for row in corpus.attributions.itertuples():
        regions = c.loc[(row.image_id, row.head, row.method)]
        assert regions["sum"].sum() + row.unassigned_sum == pytest.approx(row.total, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(regions["pos_sum"] + regions["neg_sum"], regions["sum"], rtol=1e-12, atol=1e-15)
        amap = corpus.attribution_map(row.image_id, row.head, row.method)
        assert amap.shape == (SIZE, SIZE)
        scale = _display_scale(amap)
        assert row.scale == pytest.approx(scale, rel=1e-6)  # the table names the display map's scale
        labels = corpus.region_map(row.image_id).labels
        shown = aggregate(amap, labels, K)
        np.testing.assert_array_equal(shown.n_pixels, regions["n_pixels"].to_numpy())
        tol = regions["n_pixels"].to_numpy() * scale / 254 * (1 + 1e-6)
        assert (np.abs(shown.sum - regions["sum"].to_numpy()) <= tol).all()
        assert abs(float(amap.sum()) - row.total) <= SIZE * SIZE * scale / 254 * (1 + 1e-6)


def test_ig_completeness(resnet_run):
    """sum(map) - delta = f(x) - f(black), with f computed here on the bare module."""
    model, _, _, _, corpus = resnet_run
    ig = corpus.attributions[corpus.attributions["method"] == "ig"]
    black = ((0 - torch.tensor(model.spec.mean)) / torch.tensor(model.spec.std)).view(1, 3, 1, 1)
    for row in ig.itertuples():
        x = _input_tensor(corpus, row.image_id, model)
        with torch.no_grad():
            gap = float(model.module(x)[row.head][0, row.target_index]
                        - model.module(black.expand_as(x))[row.head][0, row.target_index])
        l1 = float(np.abs(corpus.attribution_map(row.image_id, row.head, "ig")).sum())
        # the table's total is the sum of the full-precision (float32) map, not of the int8 display map
        assert row.total - row.delta == pytest.approx(gap, abs=l1 * 1e-5 + 1e-6)
        assert abs(row.delta) <= 3e-3 * l1  # quadrature error of 64 Gauss-Legendre steps


def test_lrp_matches_zennit_reference(resnet_run):
    """The tables' region statistics (from the full-precision map) equal zennit's map aggregated over the same
    regions; the stored display map equals zennit's up to its int8 resolution."""
    model, _, _, _, corpus = resnet_run
    K = len(corpus.vocabulary)
    lrp = corpus.attributions[corpus.attributions["method"] == "lrp"]
    c = corpus.contributions.set_index(["image_id", "head", "method"]).sort_values("region_index")
    for row in lrp.itertuples():
        x = _input_tensor(corpus, row.image_id, model)
        ref = _zennit_reference(model.module, x, row.head, row.target_index).astype(np.float64)
        want = aggregate(ref, corpus.region_map(row.image_id).labels, K)
        got = c.loc[(row.image_id, row.head, "lrp")]
        # equal up to float32 sums and isolated epsilon-stabilised pixels (zennit's own BatchNorm merge
        # leaves a factor 1 / sqrt(1 + eps) per BatchNorm; semcontrib's merge is exact)
        l1 = float(np.abs(ref).sum())
        for table_col, ref_values in (("sum", want.sum), ("pos_sum", want.pos_sum), ("neg_sum", want.neg_sum)):
            np.testing.assert_allclose(got[table_col].to_numpy(), ref_values, rtol=0, atol=1e-3 * l1)
        assert row.total == pytest.approx(want.total, abs=1e-3 * l1)
        assert row.unassigned_sum == pytest.approx(want.unassigned[1], abs=1e-3 * l1)
        shown = corpus.attribution_map(row.image_id, row.head, "lrp")
        np.testing.assert_allclose(shown, ref, atol=5e-2 * np.abs(ref).max() + _display_scale(shown) / 254)
        assert np.corrcoef(shown.ravel(), ref.ravel())[0, 1] > 0.999


def test_outputs_unchanged_after_attribution(resnet_run):
    model, probe, before, _, corpus = resnet_run
    after = model.module(probe)
    for k in before:
        assert torch.equal(before[k], after[k])
    row = corpus.attributions.iloc[0]
    with torch.no_grad():
        z = model.module(_input_tensor(corpus, row["image_id"], model))[row["head"]][0, row["target_index"]]
    assert row["logit"] == pytest.approx(float(z), rel=1e-5)


@pytest.mark.parametrize("single", [False, True])
def test_tuple_and_single_tensor_modules(photos, tmp_path, single):
    heads = {"colour": ["warm", "cold"]} if single else {"colour": ["warm", "cold"], "shape": ["a", "b", "c"]}
    module = TinyConv((2,) if single else (2, 3), single=single)
    model = wrap_model(module, heads=heads, input_size=32)
    assert model.identity["output"] == ("tensor" if single else "tuple")
    assert model.spec.cam_layer == "net.features"  # default: last child with a 4-D output
    report = semcontrib.analyze(photos, tmp_path / "c", model=model, methods=["gradcam", "lrp", "ig"],
                                regions="grid", method_params={"ig": {"n_steps": 16}, "lrp": {"composite": "epsilon"}})
    corpus = Corpus.open(tmp_path / "c")
    assert report.n_ok == 3 and corpus.heads == list(heads)
    x = _input_tensor_tiny(corpus, model)
    with torch.no_grad():
        out = module(x)
    first = out if single else out[0]
    img = corpus.images.iloc[0]
    assert img["pred_colour"] == heads["colour"][int(first.argmax())]
    c = corpus.contributions.groupby(["image_id", "head", "method"])["sum"].sum()
    for row in corpus.attributions.itertuples():
        assert c[(row.image_id, row.head, row.method)] + row.unassigned_sum == pytest.approx(row.total, abs=1e-9)
    assert corpus.manifest["methods"]["lrp"]["notes"]["lrp_support"] == "rules"


def _input_tensor_tiny(corpus: Corpus, model: WrappedModel) -> torch.Tensor:
    from semcontrib.imageio import load_rgb, resize_rgb

    return model.preprocess(resize_rgb(load_rgb(corpus.images.iloc[0]["path"]).rgb, model.input_size))


def test_model_key_follows_weights():
    a, b = TinyConv((2,), single=True), TinyConv((2,), single=True)
    ka = model_key(wrap_model(a, heads={"h": ["x", "y"]}, input_size=16))
    assert ka == model_key(wrap_model(b, heads={"h": ["x", "y"]}, input_size=16))
    with torch.no_grad():
        b.heads[0].bias[0] += 1e-3
    assert ka != model_key(wrap_model(b, heads={"h": ["x", "y"]}, input_size=16))
    assert ka != model_key(wrap_model(a, heads={"h": ["x", "z"]}, input_size=16))


def test_changed_weights_recompute(photos, tmp_path):
    module = TinyConv((2,), single=True)
    kw = {"heads": {"h": ["x", "y"]}, "input_size": 16}
    first = semcontrib.analyze(photos, tmp_path / "c", model=wrap_model(module, **kw), methods=["gradcam"],
                               regions="grid")
    again = semcontrib.analyze(photos, tmp_path / "c", model=wrap_model(module, **kw), methods=["gradcam"],
                               regions="grid")
    assert first.computed["predictions"] == 3 and again.computed["predictions"] == 0
    with torch.no_grad():
        module.heads[0].weight.mul_(2.0)
    changed = semcontrib.analyze(photos, tmp_path / "c", model=wrap_model(module, **kw), methods=["gradcam"],
                                 regions="grid")
    assert changed.computed["predictions"] == 3 and changed.computed["attr:gradcam"] == 3


def test_transform_callable_equals_mean_std():
    from torchvision import transforms

    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    module = TinyConv((2,), single=True)
    by_stats = wrap_model(module, heads={"h": ["x", "y"]}, input_size=16, mean=mean, std=std)
    by_fn = wrap_model(module, heads={"h": ["x", "y"]}, input_size=16,
                       transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)]))
    np.testing.assert_allclose(by_fn.spec.mean, mean, atol=1e-5)
    np.testing.assert_allclose(by_fn.spec.std, std, atol=1e-5)
    rgb = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    torch.testing.assert_close(by_fn.preprocess(rgb), by_stats.preprocess(rgb), atol=1e-5, rtol=1e-5)


def test_uncovered_operations_are_declared():
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.norm = nn.GroupNorm(2, 4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            h = self.norm(self.conv(x))
            h = h * torch.sigmoid(h)
            return self.fc(h.mean(dim=(2, 3)))

    cov = lrp_coverage(Gated())
    assert cov.traced and cov.support == "partial"
    assert cov.n_operations == 6
    names = " ".join(cov.uncovered)
    for part in ("norm (GroupNorm)", "mul", "sigmoid", "mean"):
        assert part in names
    assert cov.note().startswith("zennit rules on 2 of 6 operations")
    assert "gradient through 4 uncovered operations" in cov.note()


def test_untraceable_forward_is_declared():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            y = self.conv(x).mean(dim=(2, 3))
            return y if float(y.sum()) > 0 else -y  # data-dependent control flow: torch.fx cannot trace it

    cov = lrp_coverage(Branchy())
    assert not cov.traced and cov.support == "partial"
    assert "could not be traced with torch.fx" in cov.note()
    model = wrap_model(Branchy(), heads={"h": ["a", "b"]}, input_size=16)
    assert model.spec.lrp_support == "partial"


def test_batchnorm_merge_keeps_outputs():
    """The canonizers found from the trace leave the outputs unchanged (BatchNorm merged exactly)."""
    from zennit.composites import EpsilonPlus

    model = _wrapped_resnet(seed=2)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        ref = model(x)
    with EpsilonPlus(canonizers=model.canonizers()).context(model) as modified, torch.no_grad():
        out = modified(x)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-5)
    assert len(model.coverage.merge_pairs) == 20


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"module": "not a module"}, TypeError, "torch.nn.Module"),
    ({"heads": {}}, ValueError, "at least one head"),
    ({"heads": ["animal"]}, TypeError, "mapping"),
    ({"heads": {"animal": "cat"}}, TypeError, "list of strings"),
    ({"heads": {"animal": ["cat", "cat", "dog"], "indoor": ["no", "yes"]}}, ValueError, "unique"),
    ({"heads": {"animal": ["cat", "dog"], "indoor": ["no", "yes"]}}, ValueError, "N x 2"),
    ({"heads": {"animal": ["cat", "dog", "bird"]}, "input_size": 4}, ValueError, "8..4096"),
    ({"heads": {"animal": ["cat", "dog", "bird"], "other": ["a"]}}, ValueError, "missing"),
    ({"std": (0.2, 0.0, 0.2)}, ValueError, "std must be positive"),
    ({"mean": (0.5, 0.5)}, ValueError, "three"),
    ({"gradcam_layer": "body.layer9"}, ValueError, "not a submodule"),
    ({"gradcam_layer": nn.Conv2d(3, 3, 1)}, ValueError, "submodule of the wrapped module"),
    ({"gradcam_layer": 3}, TypeError, "gradcam_layer"),
    ({"gradcam_layer": "body.layer4.0.relu"}, ValueError, "runs 2 times"),
    ({"gradcam_layer": "body.fc"}, ValueError, "N x C x h x w"),
    ({"gradcam_layer": "body"}, ValueError, "N x C x h x w"),
    ({"transform": "normalise"}, TypeError, "callable"),
    ({"transform": lambda rgb: torch.zeros(3, 8, 8)}, ValueError, "3 x 64 x 64"),
    ({"transform": lambda rgb: torch.from_numpy(rgb).permute(2, 0, 1).float().div(255) ** 2}, ValueError,
     "affine"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"module": ResNetTwoHeads(), "heads": HEADS, "input_size": SIZE, **kwargs}
    module, heads = args.pop("module"), args.pop("heads")
    with pytest.raises(error, match=match):
        wrap_model(module, heads=heads, **args)


def test_bad_outputs():
    class Returns(nn.Module):
        def __init__(self, value) -> None:
            super().__init__()
            self.value = value
            self.conv = nn.Conv2d(3, 1, 1)

        def forward(self, x):
            return self.value(self.conv(x))

    with pytest.raises(ValueError, match="2 outputs, but 1 heads"):
        wrap_model(Returns(lambda y: (y.flatten(1)[:, :2], y.flatten(1)[:, :2])), heads={"h": ["a", "b"]},
                   input_size=8)
    with pytest.raises(ValueError, match="exactly one head"):
        wrap_model(Returns(lambda y: y.flatten(1)[:, :2]), heads={"h": ["a", "b"], "g": ["c", "d"]}, input_size=8)
    with pytest.raises(TypeError, match="dict, tuple or tensor"):
        wrap_model(Returns(lambda y: "logits"), heads={"h": ["a", "b"]}, input_size=8)


def test_lazy_export():
    assert semcontrib.wrap_model is wrap_model


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's "Explain your own model" example, executed as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Explain your own model", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    corpus = namespace["corpus"]
    assert namespace["report"].n_ok == 3
    assert corpus.manifest["methods"]["lrp"]["notes"]["lrp_note"].startswith("zennit rules on 62 of 62")
    assert sorted(corpus.heads) == ["animal", "indoor"]
