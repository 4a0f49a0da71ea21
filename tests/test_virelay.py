"""ViRelAy export: the project YAML and the three HDF5 databases as ViRelAy's spec and reader expect."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
yaml = pytest.importorskip("yaml")
pytest.importorskip("torch")

from semcontrib.corpus import Corpus  # noqa: E402
from semcontrib.virelay import ViRelAySettings, cluster, embed, export_virelay  # noqa: E402

from .conftest import synthetic_rgb, tiny_model  # noqa: E402

N_IMAGES = 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    """Ten synthetic photos and one broken file, analysed by the tiny two-head model (grid regions)."""
    from PIL import Image

    from semcontrib.pipeline import analyze

    root = tmp_path_factory.mktemp("vr")
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(N_IMAGES):
        Image.fromarray(synthetic_rgb(rng, 40 + 2 * i, 50)).save(folder / f"img{i:02d}.png")
    (folder / "broken.png").write_text("not an image")
    with open(root / "labels.csv", "w") as f:  # ground truth for task_a on every image
        f.write("path,task_a\n" + "".join(f"images/img{i:02d}.png,{'yes' if i % 2 else 'no'}\n"
                                          for i in range(N_IMAGES)) + "images/broken.png,no\n")
    analyze(root / "labels.csv", root / "corpus", model=tiny_model(), methods=["gradcam", "ig"], regions="grid",
            method_params={"ig": {"n_steps": 8}})
    return Corpus.open(root / "corpus")


@pytest.fixture(scope="module")
def project(corpus, tmp_path_factory) -> Path:
    return export_virelay(corpus, tmp_path_factory.mktemp("export") / "vr", head="task_a", method="ig")


def _yaml(project: Path) -> dict:
    return yaml.safe_load(project.read_text())["project"]


def test_yaml_names_existing_files(project):
    p = _yaml(project)
    root = project.parent
    assert p["dataset"]["type"] == "hdf5"
    assert p["dataset"]["input_width"] == p["dataset"]["input_height"] == 32
    assert p["dataset"]["up_sampling_method"] == p["dataset"]["down_sampling_method"] == "none"
    assert p["attributions"]["attribution_strategy"] == "predicted_label"
    assert p["attributions"]["attribution_method"].startswith("ig ")
    files = [p["label_map"], p["dataset"]["path"], *p["attributions"]["sources"],
             *[s for a in p["analyses"] for s in a["sources"]]]
    assert len(files) == 4
    for name in files:
        assert not Path(name).is_absolute() and (root / name).is_file(), name
    assert p["dataset"]["path"].endswith(".input.h5")
    assert p["attributions"]["sources"][0].endswith(".attribution.h5")
    assert p["analyses"][0]["sources"][0].endswith(".analysis.h5")
    label_map = json.loads((root / p["label_map"]).read_text())
    assert label_map == [{"index": 0, "word_net_id": "", "name": "no"}, {"index": 1, "word_net_id": "", "name": "yes"}]


def test_input_database(project, corpus):
    p = _yaml(project)
    with h5py.File(project.parent / p["dataset"]["path"], "r") as f:
        data, label = f["data"], f["label"]
        assert data.dtype == np.float32 and data.shape == (N_IMAGES, 3, 32, 32)
        data_all = data[...]
        assert 0.0 <= float(data_all.min()) and float(data_all.max()) <= 1.0
        assert label.dtype == np.uint16 and label.shape == (N_IMAGES,)
        labels = label[...].tolist()
        ids = [s.decode() if isinstance(s, bytes) else s for s in f["image_id"][...]]
    assert ids == corpus.image_ids()
    from PIL import Image

    from semcontrib.imageio import resize_rgb

    for k, image_id in enumerate(ids):  # the display photograph the corpus stores, squashed to 32 x 32
        jpeg = corpus.display_jpeg(image_id)
        assert jpeg is not None
        rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        np.testing.assert_array_equal(data_all[k], resize_rgb(rgb, 32).transpose(2, 0, 1).astype(np.float32) / 255.0)
    # ground truth from the CSV's task_a column: odd images are "yes" (index 1)
    assert labels == [int(Path(q).stem[3:]) % 2 for q in corpus.images.set_index("image_id").loc[ids, "path"]]


def test_attribution_database_one_map_per_image(project, corpus):
    p = _yaml(project)
    with h5py.File(project.parent / p["attributions"]["sources"][0], "r") as f:
        index, attr, pred, label = (f[k][...] for k in ("index", "attribution", "prediction", "label"))
        dtypes = {k: f[k].dtype for k in ("index", "attribution", "prediction", "label")}
    assert dtypes == {"index": np.uint32, "attribution": np.float32, "prediction": np.float32, "label": np.uint16}
    assert index.tolist() == list(range(N_IMAGES))  # one attribution per image, in input order
    assert attr.shape == (N_IMAGES, 3, 32, 32) and pred.shape == (N_IMAGES, 2) and label.shape == (N_IMAGES,)
    rows = corpus.attributions.query("head == 'task_a' and method == 'ig'").set_index("image_id")
    for k, image_id in enumerate(corpus.image_ids()):
        amap = corpus.attribution_map(image_id, "task_a", "ig")  # channels hold map / 3, summing to the map
        np.testing.assert_allclose(attr[k].sum(0, dtype=np.float64), amap, rtol=1e-6, atol=1e-7 * np.abs(amap).max())
        np.testing.assert_array_equal(attr[k, 0], attr[k, 2])
        assert label[k] == rows.loc[image_id, "target_index"]
        assert pred[k, label[k]] == pytest.approx(rows.loc[image_id, "logit"], rel=1e-6)
        pred_name = corpus.images.set_index("image_id").loc[image_id, "pred_task_a"]
        assert ["no", "yes"][int(np.argmax(pred[k]))] == pred_name


def test_analysis_database(project, corpus):
    p = _yaml(project)
    with h5py.File(project.parent / p["analyses"][0]["sources"][0], "r") as f:
        assert list(f.keys()) == ["all"]
        g = f["all"]
        assert g["index"].dtype == np.uint32 and g["index"][...].tolist() == list(range(N_IMAGES))
        assert list(g["embedding"].keys()) == ["tsne"]
        emb = g["embedding"]["tsne"]
        assert isinstance(emb, h5py.Dataset) and emb.dtype == np.float32 and emb.shape == (N_IMAGES, 2)
        assert np.all(np.isfinite(emb[...]))
        names = list(g["cluster"].keys())
        assert names == ["kmeans-02", "kmeans-03", "kmeans-04", "kmeans-05", "kmeans-06", "kmeans-08"]
        for name in names:
            labels = g["cluster"][name][...]
            k = int(g["cluster"][name].attrs["k"])
            assert labels.shape == (N_IMAGES,) and labels.dtype == np.uint32
            assert set(labels.tolist()) <= set(range(k))


def test_loads_in_virelay(project):
    """ViRelAy's own read-only model opens the project and returns samples, attributions, analyses."""
    model = pytest.importorskip("virelay.model")
    proj = model.Project(str(project))
    try:
        assert len(proj.dataset) == N_IMAGES
        sample = proj.get_sample(3)
        assert sample.data.shape == (32, 32, 3) and sample.labels[0].name == "yes"
        attribution = proj.get_attribution(3)
        assert attribution.data.shape == (32, 32, 3) and attribution.prediction.shape == (2,)
        method = proj.get_analysis_methods()[0]
        assert [c.name for c in proj.get_analysis_categories(method)] == ["all"]
        clusterings = proj.get_analysis_clustering_names(method)
        analysis = proj.get_analysis(method, "all", clusterings[0], proj.get_analysis_embedding_names(method)[0])
        assert analysis.embedding.shape == (N_IMAGES, 2) and analysis.clustering.shape == (N_IMAGES,)
        assert all(proj.get_attribution(int(i)).index == int(i) for i in analysis.attribution_indices)
        heatmap = attribution.render_heatmap("gray-red")
        assert heatmap.shape[:2] == (32, 32)
    finally:
        proj.close()


def test_default_head_and_method_and_prediction_labels(corpus, tmp_path):
    out = export_virelay(corpus, tmp_path / "d")
    p = _yaml(out)
    assert "task_a" in p["attributions"]["sources"][0] and "gradcam" in p["attributions"]["sources"][0]
    out_b = export_virelay(corpus, tmp_path / "b", head="task_b", method="gradcam")
    p = _yaml(out_b)
    assert "predicted class" in p["dataset"]["name"]  # no task_b column: labels are the predictions
    with h5py.File(out_b.parent / p["dataset"]["path"], "r") as f:
        labels = f["label"][...]
    pred = corpus.images.set_index("image_id").loc[corpus.image_ids(), "pred_task_b"]
    assert [["x", "y", "z"][i] for i in labels] == pred.tolist()


def test_embedding_quality_and_small_corpora():
    rng = np.random.default_rng(0)
    centres = np.eye(4)
    X = np.concatenate([c + 0.05 * rng.standard_normal((10, 4)) for c in centres])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    truth = np.repeat(np.arange(4), 10)
    name, Y = embed(X)
    assert name == "tsne" and Y.shape == (40, 2)
    from sklearn.neighbors import KNeighborsClassifier

    acc = KNeighborsClassifier(3).fit(Y, truth).score(Y, truth)  # the clusters stay apart in 2-D
    assert acc >= 0.95
    labels = cluster(X, 4)
    assert len({tuple(np.unique(labels[truth == t])) for t in range(4)}) == 4
    name, Y = embed(X[:3])
    assert name == "pca" and Y.shape == (3, 2)
    np.testing.assert_allclose(np.linalg.norm(Y[0] - Y[1]), np.linalg.norm(X[0] - X[1]), rtol=1e-9)


def test_bad_arguments(corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown head"):
        export_virelay(corpus, tmp_path, head="nope")
    with pytest.raises(ValueError, match="unknown method"):
        export_virelay(corpus, tmp_path, method="lrp")
    with pytest.raises(ValueError, match="normalisation"):
        ViRelAySettings(normalisation="l2")
    with pytest.raises(ValueError, match="n_clusters"):
        ViRelAySettings(n_clusters=(1,))


def test_split_normalisation(corpus, tmp_path):
    out = export_virelay(corpus, tmp_path / "s", head="task_a", method="ig",
                         settings=ViRelAySettings(normalisation="split", n_clusters=(3,)))
    p = _yaml(out)
    with h5py.File(out.parent / p["analyses"][0]["sources"][0], "r") as f:
        regions = list(f["all/embedding/tsne"].attrs["regions"])
        assert len(regions) == 2 * len(corpus.vocabulary) and list(f["all/cluster"].keys()) == ["kmeans-03"]


def test_a_missing_display_photograph_is_named(corpus, tmp_path):
    """An image whose chunk file holds no display JPEG: the export says which one, and writes nothing."""
    from semcontrib.corpus import WorkStore

    root = Path(shutil.copytree(corpus.root, tmp_path / "corpus"))
    copy = Corpus.open(root)
    ids = copy.image_ids()
    chunk = copy.chunk_of(ids[3])
    assert chunk is not None
    store = WorkStore(root, copy.input_size)
    members = [i for i in copy.images["image_id"] if copy.chunk_of(i) == chunk]
    records = store.read_images(chunk, members)
    assert records is not None
    displays = {i: copy.display_jpeg(i) or b"" for i in members if i != ids[3]}
    store.write_images(chunk, records, displays)
    assert copy.display_jpeg(ids[3]) is None and copy.display_jpeg(ids[2]) == corpus.display_jpeg(ids[2])
    with pytest.raises(ValueError, match=f"display photograph of {ids[3]} is missing"):
        export_virelay(copy, tmp_path / "out" / "vr", head="task_a", method="ig")
    assert not list((tmp_path / "out").rglob("*.h5"))
