"""Helpers shared by the region-source tests."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any


def peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """(result or the ValueError raised, peak bytes traced by tracemalloc) of ``fn()``.

    numpy reports its buffers to tracemalloc, so this bounds what a decoder allocates.
    """
    tracemalloc.start()
    try:
        try:
            result = fn()
        except ValueError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
