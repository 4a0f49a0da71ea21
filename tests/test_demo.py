"""The bundled photographs: real images that install offline, written as files for the demo."""

from __future__ import annotations

from PIL import Image

from semcontrib.demo import DEMO_IMAGES, write_demo_images


def test_write_demo_images(tmp_path) -> None:
    paths = write_demo_images(tmp_path / "photos")
    assert len(paths) == len(DEMO_IMAGES) >= 10
    assert len({p.stem for p in paths}) == len(paths)  # one file per stem (external heatmaps key on it)
    for p in paths:
        with Image.open(p) as img:
            assert min(img.size) >= 64
    again = write_demo_images(tmp_path / "photos")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]
