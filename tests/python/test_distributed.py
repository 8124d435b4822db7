"""sync_observers across two processes (gloo on localhost): every rank ends
with identical observer state and qparams; for running min/max and
histograms they equal those of one process that saw all ranks' data."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import mcuq

WORLD = 2


def _shard(rank: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + rank)
    # Different ranges per rank, so a rank alone would pick other qparams.
    return torch.randn(3, 4, 5, 6, generator=gen) * (1 + 3 * rank) + rank


def _model() -> torch.nn.ModuleDict:
    return torch.nn.ModuleDict({
        "running": mcuq.MinMaxObserver(),
        "per_channel": mcuq.MinMaxObserver(quant_min=-127, quant_max=127, symmetric=True, axis=1),
        "ema": mcuq.MovingAverageMinMaxObserver(averaging_constant=0.1),
        "fake_quant": mcuq.FakeQuantize(quant_min=0, quant_max=255),
        "histogram": mcuq.HistogramObserver(bins=256),
        "histogram_per_channel": mcuq.HistogramObserver(bins=64, method="percentile", axis=1),
    })


def _rank_data(rank: int) -> torch.Tensor:
    """What rank `rank` observes: its shard with one NaN."""
    x = _shard(rank)
    x.view(-1)[rank] = float("nan")  # counted, then summed across ranks
    return x


def _observe(model, x: torch.Tensor) -> None:
    for batch in x.split(1):  # several batches, so the moving averages move
        for m in model.values():
            m(batch)


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        model = _model()
        _observe(model, _rank_data(rank))
        assert mcuq.sync_observers(model) == 6
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def synced_states(tmp_path_factory):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def test_all_ranks_end_with_identical_state_and_qparams(synced_states):
    a, b = synced_states
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_running_min_max_equals_one_process_that_saw_everything(synced_states):
    single = _model()
    everything = torch.cat([_shard(r) for r in range(WORLD)])
    for name in ("running", "per_channel"):
        single[name](everything)
    state = synced_states[0]
    for name in ("running", "per_channel"):
        assert torch.equal(state[f"{name}.min_val"], single[name].min_val), name
        assert torch.equal(state[f"{name}.max_val"], single[name].max_val), name
    assert int(state["running.nonfinite_count"]) == WORLD  # one NaN per rank


def test_histograms_equal_one_process_that_saw_everything(synced_states):
    # Histograms depend only on the values seen, so the summed, re-binned ones
    # are those of one process fed all ranks' data at once (in another order
    # and chunking than the ranks': one batch, not slices); their bin sums,
    # added in another order, up to float64 rounding.
    single = _model()
    everything = torch.cat([_rank_data(r) for r in range(WORLD)])
    state = synced_states[0]
    for name in ("histogram", "histogram_per_channel"):
        single[name](everything)
        for buffer in ("histogram", "histogram_range", "min_val", "max_val", "nonfinite_count"):
            assert torch.equal(state[f"{name}.{buffer}"], getattr(single[name], buffer)), (name, buffer)
        torch.testing.assert_close(state[f"{name}.histogram_sum"], single[name].histogram_sum, rtol=1e-12, atol=0.0)
        assert int(state[f"{name}.histogram"].sum()) == everything.isfinite().sum()
    assert state["histogram_per_channel.histogram"].shape == (4, 2 * 64 + 1)
    # Rank 0 alone had a finer grid: the re-binning really moved mass.
    alone = _model()["histogram"]
    alone(_rank_data(0))
    assert not torch.equal(alone.histogram_range, state["histogram.histogram_range"])
    qparams = single["histogram"].calculate_qparams()
    synced = _model()
    synced.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(synced["histogram"].calculate_qparams(), qparams))


def test_moving_averages_are_the_mean_of_the_ranks(synced_states):
    # The documented rule, recomputed here without torch.distributed.
    per_rank = []
    for rank in range(WORLD):
        model = _model()
        _observe(model, _rank_data(rank))
        per_rank.append(model)
    state = synced_states[0]
    for name in ("ema", "fake_quant"):
        for buffer in ("min_val", "max_val"):
            a, b = (getattr(m[name], buffer) for m in per_rank)
            assert not torch.equal(a, b)  # the ranks really differed
            assert torch.equal(state[f"{name}.{buffer}"], (a + b) / 2), (name, buffer)


def test_synced_fake_quantize_scale_follows_synced_state(synced_states):
    state = synced_states[0]
    scale, zero_point = mcuq.choose_qparams(state["fake_quant.min_val"], state["fake_quant.max_val"], 0, 255, False)
    assert torch.equal(state["fake_quant.scale"], scale)
    assert torch.equal(state["fake_quant.zero_point"], zero_point)
