"""torch.ao.quantization where it exists, mcuq's own stand-ins where not.

torch.ao.quantization is deprecated (PyTorch points to torchao) and scheduled
for deletion, so mcuq must not need it. Where it exists, mcuq's observers and
fake-quantizers subclass its ``ObserverBase`` / ``FakeQuantizeBase`` and
presets build its ``QConfig``: they plug into its eager ``prepare`` /
``prepare_qat`` / ``convert`` as before. Where it does not, they subclass the
stand-ins below, which keep the same interface: ``with_args`` factories whose
``p`` holds the arguments, the ``observer_enabled`` / ``fake_quant_enabled``
switches as uint8 buffers with their ``enable_*`` / ``disable_*`` methods, and
a ``QConfig`` named tuple. ``AVAILABLE`` says which one was found.
"""

import functools
from collections import namedtuple

import torch
from torch import Tensor, nn


class _PartialWrapper:
    """What ``with_args`` returns: a factory, its arguments in ``p`` (as torch.ao's)."""

    def __init__(self, p: functools.partial) -> None:
        self.p = p

    def __call__(self, *args, **kwargs):
        return self.p(*args, **kwargs)

    def __repr__(self) -> str:
        return repr(self.p)

    def with_args(self, **kwargs) -> "_PartialWrapper":
        return _PartialWrapper(functools.partial(self.p, **kwargs))


def _with_args(cls, **kwargs) -> _PartialWrapper:
    return _PartialWrapper(functools.partial(cls, **kwargs))


class _ObserverBase(nn.Module):
    """Stand-in for torch.ao's ``ObserverBase``: records the dtype of the range."""

    def __init__(self, dtype, is_dynamic: bool = False) -> None:
        super().__init__()
        self.dtype = dtype
        self.is_dynamic = is_dynamic

    with_args = classmethod(_with_args)


class _FakeQuantizeBase(nn.Module):
    """Stand-in for torch.ao's ``FakeQuantizeBase``: the two switches."""

    fake_quant_enabled: Tensor
    observer_enabled: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("fake_quant_enabled", torch.tensor([1], dtype=torch.uint8))
        self.register_buffer("observer_enabled", torch.tensor([1], dtype=torch.uint8))

    @torch.jit.export
    def enable_fake_quant(self, enabled: bool = True) -> None:
        self.fake_quant_enabled[0] = 1 if enabled else 0

    @torch.jit.export
    def disable_fake_quant(self) -> None:
        self.enable_fake_quant(False)

    @torch.jit.export
    def enable_observer(self, enabled: bool = True) -> None:
        self.observer_enabled[0] = 1 if enabled else 0

    @torch.jit.export
    def disable_observer(self) -> None:
        self.enable_observer(False)

    with_args = classmethod(_with_args)


_QConfig = namedtuple("QConfig", ["activation", "weight"])


def _find():
    try:
        from torch.ao.quantization import FakeQuantizeBase, ObserverBase, QConfig
    except Exception:  # ImportError, or whatever a half-removed package raises
        return False, _ObserverBase, _FakeQuantizeBase, _QConfig
    return True, ObserverBase, FakeQuantizeBase, QConfig


AVAILABLE, ObserverBase, FakeQuantizeBase, QConfig = _find()

__all__ = ["AVAILABLE", "ObserverBase", "FakeQuantizeBase", "QConfig"]
