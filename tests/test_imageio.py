"""Image loading: conversion rules and skip reasons."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semcontrib.imageio import ImageLoadError, load_rgb


def save(tmp_path, img: Image.Image, name: str, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def test_grayscale_replicated(tmp_path):
    g = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    out = load_rgb(save(tmp_path, Image.fromarray(g, "L"), "g.png"))
    assert out.rgb.shape == (16, 16, 3) and out.original_mode == "L"
    assert np.array_equal(out.rgb[..., 0], g) and np.array_equal(out.rgb[..., 2], g)


def test_rgba_composited_over_white(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)
    a[..., 0] = 200
    a[:, :5, 3] = 255  # left half opaque red, right half fully transparent
    out = load_rgb(save(tmp_path, Image.fromarray(a, "RGBA"), "a.png")).rgb
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[0, 9]) == (255, 255, 255)


def test_cmyk_converted(tmp_path):
    img = Image.new("CMYK", (12, 12), (0, 255, 255, 0))  # pure red in CMYK
    out = load_rgb(save(tmp_path, img, "c.jpg", quality=100))
    assert out.original_mode == "CMYK"
    r, g, b = out.rgb[6, 6].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_grey_scaled(tmp_path):
    arr = np.full((12, 12), 65535, np.uint16)
    arr[0, 0] = 0
    arr[0, 1] = 32896  # ~ 128 * 257
    out = load_rgb(save(tmp_path, Image.fromarray(arr), "s.png"))
    assert out.original_mode.startswith("I")
    assert out.rgb[5, 5, 0] == 255 and out.rgb[0, 0, 0] == 0 and out.rgb[0, 1, 0] == 128


def test_palette_image(tmp_path):
    img = Image.new("P", (10, 10))
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.paste(1, (0, 0, 10, 5))
    out = load_rgb(save(tmp_path, img, "p.png")).rgb
    assert tuple(out[0, 0]) == (10, 200, 30) and tuple(out[9, 9]) == (0, 0, 0)


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # white left half of a landscape image
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    p = tmp_path / "e.jpg"
    img.save(p, exif=exif, quality=100)
    out = load_rgb(p)
    assert out.orientation == 6 and out.rgb.shape == (20, 10, 3)
    assert out.rgb[2, 5].mean() > 200 and out.rgb[18, 5].mean() < 50  # white half now on top


@pytest.mark.parametrize("maker,reason", [
    (lambda p: p.write_text("hello"), "not an image"),
    (lambda p: p.write_bytes(b""), "not an image"),
])
def test_non_images_skipped_with_reason(tmp_path, maker, reason):
    p = tmp_path / "x.png"
    maker(p)
    with pytest.raises(ImageLoadError, match=reason):
        load_rgb(p)


def test_truncated_file_skipped(tmp_path):
    rng = np.random.default_rng(0)
    p = save(tmp_path, Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "t.png")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="unreadable"):
        load_rgb(p)


def test_decompression_bomb_skipped_before_decoding(tmp_path):
    p = save(tmp_path, Image.new("RGB", (300, 300)), "big.png")
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_rgb(p, max_pixels=10_000)


def test_too_small_and_missing(tmp_path):
    with pytest.raises(ImageLoadError, match="too small"):
        load_rgb(save(tmp_path, Image.new("RGB", (4, 30)), "tiny.png"))
    with pytest.raises(ImageLoadError, match="file not found"):
        load_rgb(tmp_path / "nope.png")
