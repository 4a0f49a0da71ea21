"""Where, in which precision and in which memory layout the model runs (``ComputeOptions``).

Torch is imported inside the functions that use it, so that the engine can hold its ``ComputeOptions``
without importing torch (a rerun with nothing to compute never does)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from semcontrib.settings import DEFAULT_PRECISION, PRECISIONS

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class ComputeOptions:
    """Where, in which precision and in which memory layout the model runs.

    ``precision`` changes the results by rounding (bounds measured per method in
    :mod:`semcontrib.attribution`), so it belongs with what a corpus records; ``device`` and
    ``channels_last`` change only the kernels (float32 rounding order).

    Attributes
    ----------
    device : ``cpu``, ``cuda`` or ``cuda:N``.
    precision : ``fp32`` or ``bf16`` (``settings.PRECISIONS``). ``bf16`` runs forwards and backwards
        under ``torch.autocast(device_type, dtype=torch.bfloat16)``: convolutions and matrix products
        in bfloat16, parameters, inputs and input gradients stay float32. Every output the methods
        return (maps, logits, scores, deltas) is float32/float64 numpy in both precisions.
    channels_last : store the model's 4-d weights and the input batches as NHWC
        (``torch.channels_last``); the same values up to float32 rounding order, possibly faster.

    Examples
    --------
    >>> import torch
    >>> opts = ComputeOptions(precision="bf16")
    >>> with opts.context():
    ...     torch.ones(2, 2) @ torch.ones(2, 2)
    tensor([[2., 2.],
            [2., 2.]], dtype=torch.bfloat16)
    """

    device: str = "cpu"
    precision: str = DEFAULT_PRECISION
    channels_last: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not (
                self.device in ("cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from {PRECISIONS}")
        if not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be True or False, got {self.channels_last!r}")

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda`` (the ``torch.autocast`` device type)."""
        return self.device.partition(":")[0]

    def check_available(self) -> None:
        """Raise ``ValueError`` when a CUDA device is asked for and none is available."""
        if self.device_type != "cuda":
            return
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} was asked for, but no CUDA device is available "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")

    def prepare(self, net: nn.Module) -> nn.Module:
        """:func:`prepare_model` with these options."""
        return prepare_model(net, self.device, self.channels_last)

    def tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """A float NCHW batch on the device, in the model's memory format (see :func:`to_memory_format`)."""
        return to_memory_format(tensor.to(self.device), self.channels_last)

    def context(self) -> contextlib.AbstractContextManager[Any]:
        """:func:`compute_context` with these options."""
        return compute_context(self.device, self.precision)


def prepare_model(net: nn.Module, device: str, channels_last: bool = False) -> nn.Module:
    """Move ``net`` to ``device`` (in place, as ``nn.Module.to``); NHWC weights when ``channels_last``.

    ``channels_last=False`` turns the 4-d weights back to contiguous NCHW. The values and the
    model's outputs do not change; only the kernels used do.
    """
    ComputeOptions(device, DEFAULT_PRECISION, channels_last).check_available()
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return net.to(device).to(memory_format=fmt)


def to_memory_format(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A float NCHW batch as channels-last (NHWC strides) when asked, else contiguous; same values.

    Give the model inputs in the same memory format as its weights (:func:`prepare_model`);
    tensors that are not 4-d are returned unchanged.
    """
    import torch

    if tensor.dim() != 4:
        return tensor
    return tensor.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def compute_context(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context the model's passes run in: ``torch.autocast`` in bfloat16 for ``bf16``, a null
    context for ``fp32``.

    Wrap every call that runs the model (:func:`predict_with_evidence`, ``attribute_batch``,
    ``attribute_regions``, ``semcontrib.validity.compute_validity``) in it. Methods that cannot run
    in bfloat16 turn autocast off inside (see :func:`full_precision`).
    """
    opts = ComputeOptions(device, precision)
    if opts.precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(opts.device_type, dtype=torch.bfloat16)


@contextlib.contextmanager
def full_precision(tensor: torch.Tensor) -> Iterator[None]:
    """Turn off any autocast active on ``tensor``'s device type for the block (the block runs in fp32)."""
    import torch

    with torch.autocast(tensor.device.type, enabled=False):
        yield


def autocast_active(tensor: torch.Tensor) -> bool:
    """Whether autocast is on for ``tensor``'s device type (inside :func:`compute_context` in ``bf16``)."""
    import torch

    return bool(torch.is_autocast_enabled(tensor.device.type))
