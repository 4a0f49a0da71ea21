"""Image loading: conversion rules, skip reasons, odd file names, fuzzing."""

from __future__ import annotations

import os
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from semcontrib.imageio import ImageLoadError, display_name, list_images, load_rgb


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


# --------------------------------------------------------------------------- every failure is a reason


@pytest.mark.parametrize("exc", [RuntimeError("decoder state"), KeyError("tile"), TypeError("bad"),
                                 MemoryError(), IndexError("x\ny"), ZeroDivisionError()])
def test_any_exception_while_converting_becomes_a_reason(tmp_path, monkeypatch, exc):
    import semcontrib.imageio as imageio

    p = save(tmp_path, Image.new("RGB", (20, 20)), "ok.png")

    def boom(img):
        raise exc

    monkeypatch.setattr(imageio, "_to_rgb", boom)
    with pytest.raises(ImageLoadError) as info:
        load_rgb(p)
    assert info.value.reason.startswith("unreadable image") and "\n" not in str(info.value)


def test_exceptions_from_exif_transpose_become_a_reason(tmp_path, monkeypatch):
    from PIL import ImageOps

    img = Image.new("RGB", (20, 10))
    exif = img.getexif()
    exif[0x0112] = 6
    p = tmp_path / "e.jpg"
    img.save(p, exif=exif)

    def broken(image):
        raise TypeError("unhashable type in EXIF")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    with pytest.raises(ImageLoadError, match="TypeError: unhashable type in EXIF"):
        load_rgb(p)


@pytest.mark.parametrize("tag", [0, 9, 300])
def test_invalid_orientation_tag_is_ignored(tmp_path, tag):
    img = Image.new("RGB", (20, 10))
    exif = img.getexif()
    exif[0x0112] = tag
    p = tmp_path / "e.jpg"
    img.save(p, exif=exif)
    out = load_rgb(p)
    assert out.orientation == 1 and out.rgb.shape == (10, 20, 3)


# --------------------------------------------------------------------------- odd file names

ODD_NAMES = [os.fsdecode(b"caf\xe9-latin1.png"), "new\nline.png", "tab\tand\rcr.png", "emoji-\U0001f600.png"]


def test_odd_file_names_are_listed_loaded_and_displayable(tmp_path):
    for name in ODD_NAMES:
        save(tmp_path, Image.new("RGB", (12, 12), (200, 10, 10)), name)
    (tmp_path / os.fsdecode(b"broken\xff\n.png")).write_bytes(b"junk")
    listed = list_images(tmp_path)
    assert sorted(p.name for p in listed) == sorted(ODD_NAMES + [os.fsdecode(b"broken\xff\n.png")])
    for p in listed:
        shown = display_name(p)
        assert shown.isprintable() and shown.encode("utf-8")  # no surrogates, no newlines
        if p.name.startswith("broken"):
            with pytest.raises(ImageLoadError) as info:
                load_rgb(p)
            assert "\n" not in str(info.value) and str(info.value).encode("utf-8")
            assert "broken\\xff\\n.png" in str(info.value)
        else:
            assert load_rgb(p).rgb.shape == (12, 12, 3)


def test_display_name_escapes():
    assert display_name("plain é name.jpg") == "plain é name.jpg"
    assert display_name(os.fsdecode(b"a\xff\xfeb")) == "a\\xff\\xfeb"
    assert display_name("a\nb\tc\rd\x00e\x7f") == "a\\nb\\tc\\rd\\x00e\\x7f"
    assert display_name("zero\u200bwidth\ud800") == "zero\\u200bwidth\\ud800"
    assert display_name(Path("dir") / "x.png") == "dir/x.png"
    assert display_name(b"bytes\xff.png") == "bytes\\xff.png"


# --------------------------------------------------------------------------- fuzzing the loader

FUZZ = settings(max_examples=100, deadline=3000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _png(width, height, depth, colour, tail):
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(tail)) + chunk(b"IEND", b"")


def _jpeg(width, height, components, tail):
    sof = struct.pack(">BHHB", 8, height, width, components) + b"".join(
        bytes([i + 1, 0x11, 0]) for i in range(components))
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + tail


def _gif(width, height, tail):
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02"  # an image descriptor
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + frame + tail


def _bmp(width, height, bits, tail):
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(tail), 0, 0, 54) + info + tail


@st.composite
def _mutated_real(draw):
    """A real small image file (PNG, JPEG, GIF, BMP, TIFF, WebP; several modes), as is, with one byte
    changed, or cut."""
    import io

    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1", "I;16", "CMYK", "LA"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]))
    seed = draw(st.integers(0, 2**16))
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):  # this mode cannot be written in this format
        img.convert("RGB").save(buf, format=fmt)
    data = buf.getvalue()
    i = draw(st.integers(0, len(data) - 1))
    kind = draw(st.sampled_from(["none", "edit", "cut"]))
    if kind == "edit":
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
    return data[:i] if kind == "cut" else data


_dim = st.one_of(st.integers(0, 40), st.integers(0, 2**16 - 1), st.integers(0, 2**31 - 1))
_tail = st.binary(max_size=200)
_files = st.one_of(
    st.binary(max_size=300),
    _mutated_real(), _mutated_real(),
    st.builds(_png, _dim, _dim, st.sampled_from([1, 2, 4, 8, 16]), st.sampled_from([0, 2, 3, 4, 6]), _tail),
    st.builds(_jpeg, st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1), st.sampled_from([1, 3, 4]), _tail),
    st.builds(_gif, st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1), _tail),
    st.builds(_bmp, st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1),
              st.sampled_from([1, 4, 8, 16, 24, 32]), _tail),
)


@FUZZ
@given(_files)
def test_loader_fuzz_loads_or_gives_a_reason_within_bounds(tmp_path, data):
    p = tmp_path / "fuzz.img"
    p.write_bytes(data)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        out = load_rgb(p, max_pixels=100_000, min_side=1)
    except ImageLoadError as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        assert out.rgb.dtype == np.uint8 and out.rgb.ndim == 3 and out.rgb.shape[2] == 3
        assert out.rgb.shape[0] * out.rgb.shape[1] <= 100_000
    # peak RSS (KiB) may not jump by more than a small multiple of the pixel limit
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000


def test_crafted_headers_claiming_huge_sizes_are_refused_before_decoding(tmp_path):
    for name, data in (("h.png", _png(60000, 60000, 8, 2, b"")), ("h.jpg", _jpeg(65535, 65535, 3, b"")),
                       ("h.gif", _gif(65535, 65535, b"")), ("h.bmp", _bmp(60000, 60000, 24, b""))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageLoadError, match="decompression bomb"):
            load_rgb(tmp_path / name)


def test_image_load_error_pickles_with_its_reason():
    import pickle

    err = pickle.loads(pickle.dumps(ImageLoadError(os.fsdecode(b"x\xff.png"), "not an image\n(unidentified)")))
    assert err.reason == "not an image (unidentified)" and err.path == os.fsdecode(b"x\xff.png")
    assert str(err) == "x\\xff.png: not an image (unidentified)"
