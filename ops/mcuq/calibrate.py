"""Post-training calibration: run data through a model whose observers record ranges."""

from typing import Iterable, Optional

import torch
from torch import nn


def _inputs(batch):
    """A batch is a tensor, or a (inputs, labels, ...) tuple/list whose first item is the input."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def calibrate(model: nn.Module, data: Iterable, num_batches: Optional[int] = None, progress: bool = True) -> int:
    """Runs up to ``num_batches`` batches of ``data`` through ``model`` in eval
    mode, without gradients, so that its observers (and fake-quantizers with
    observing enabled) record their ranges. Returns how many batches ran.
    The model's train/eval mode is restored afterwards."""
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"mcuq.calibrate: expected num_batches >= 1, but got {num_batches}")
    batches = data
    if progress:
        from tqdm import tqdm

        total = num_batches
        if total is None and hasattr(data, "__len__"):
            total = len(data)
        batches = tqdm(data, total=total, desc="calibrate", unit="batch", leave=False)
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if num_batches is not None and seen >= num_batches:
                    break
                model(_inputs(batch))
                seen += 1
    finally:
        model.train(was_training)
        if progress:
            batches.close()
    if seen == 0:
        raise ValueError("mcuq.calibrate: expected at least one batch of data, but got none")
    return seen
