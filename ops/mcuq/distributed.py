"""Observer state across DistributedDataParallel ranks.

torch.ao leaves each rank with its own observer statistics (and DDP then
broadcasts rank 0's buffers). ``sync_observers`` all-reduces the statistics
instead, so every rank ends with identical state and qparams:

- running min/max (``MinMaxObserver``): MIN of the minima, MAX of the maxima;
  equal to one process that saw every rank's data;
- moving averages (``MovingAverageMinMaxObserver``, ``FakeQuantize``): the
  mean of the ranks' averages, over the ranks that have seen a finite value
  (an average of averages: a process seeing all data would average the
  batches in some order, which no rank knows);
- histograms (``HistogramObserver``): MIN of the minima and MAX of the
  maxima, then each rank re-bins its histogram exactly onto the canonical grid
  of that common range (``_histogram_rebin_``; a rank that saw nothing just
  takes the grid) and the histograms and their bin sums are SUMmed.
  Histograms on canonical grids depend only on the values seen, so for
  float32 / float16 / bfloat16 input this equals one process that saw every
  rank's data (the bin sums up to float64 rounding; float64 input: the
  float32 extremes are rounded outwards, so the grid may be coarser);
- non-finite counts: SUM.

``FakeQuantize`` then recomputes its scale and zero point from the synced
state. Call it on the same module structure on every rank, after each rank
has run at least one forward pass (per-channel state is sized on the first).
"""

from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from .observers import FakeQuantize, HistogramObserver, _MinMaxObserverBase


def _sync_average(module: nn.Module, group) -> None:
    seen = (module.min_val <= module.max_val).to(module.min_val.dtype)
    stats = torch.stack([
        torch.where(seen > 0, module.min_val, torch.zeros_like(module.min_val)),
        torch.where(seen > 0, module.max_val, torch.zeros_like(module.max_val)),
        seen,
    ])
    dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
    ranks = stats[2]
    any_seen = ranks > 0
    module.min_val.copy_(torch.where(any_seen, stats[0] / ranks.clamp_min(1), module.min_val))
    module.max_val.copy_(torch.where(any_seen, stats[1] / ranks.clamp_min(1), module.max_val))


def _sync_histogram(module: nn.Module, group) -> None:
    dist.all_reduce(module.min_val, op=dist.ReduceOp.MIN, group=group)
    dist.all_reduce(module.max_val, op=dist.ReduceOp.MAX, group=group)
    torch.ops.mcuq._histogram_rebin_(
        module.histogram, module.histogram_range, module.min_val, module.max_val, module.histogram_sum
    )
    dist.all_reduce(module.histogram, op=dist.ReduceOp.SUM, group=group)
    dist.all_reduce(module.histogram_sum, op=dist.ReduceOp.SUM, group=group)
    # The grid is a function of the common extremes, so the ranges agree; a
    # mismatch (e.g. observers configured differently) would make the sum
    # meaningless. Checked collectively, so that every rank raises alike.
    bounds = torch.stack([module.histogram_range, -module.histogram_range])
    dist.all_reduce(bounds, op=dist.ReduceOp.MAX, group=group)
    if not torch.equal(bounds[0], -bounds[1]):
        raise RuntimeError(
            "mcuq: sync_observers: HistogramObserver ranks disagree on the histogram range after "
            "re-binning; are the observers configured alike (bins, axis) on every rank?"
        )


def sync_observers(module: nn.Module, group: Optional[dist.ProcessGroup] = None) -> int:
    """All-reduces the state of every mcuq observer in ``module`` (see the
    module docstring for the rules); returns how many observers it synced."""
    synced = 0
    for m in module.modules():
        if not isinstance(m, (_MinMaxObserverBase, FakeQuantize, HistogramObserver)):
            continue
        if isinstance(m, HistogramObserver):
            _sync_histogram(m, group)
        elif m.averaging_constant is None:
            dist.all_reduce(m.min_val, op=dist.ReduceOp.MIN, group=group)
            dist.all_reduce(m.max_val, op=dist.ReduceOp.MAX, group=group)
        else:
            _sync_average(m, group)
        dist.all_reduce(m.nonfinite_count, op=dist.ReduceOp.SUM, group=group)
        if isinstance(m, FakeQuantize) and bool((m.min_val <= m.max_val).all()):
            scale, zero_point = m.calculate_qparams()
            m.scale.copy_(scale)
            m.zero_point.copy_(zero_point)
        synced += 1
    return synced
