"""mcuq's ops on CUDA tensors: every op against its CPU kernel, on random
shapes and layouts (non-contiguous, channels-last, empty, one element) and
the edge values the CPU kernels define (NaN, ±inf, ties, huge levels).

Elementwise results and observer state must equal the CPU's bit for bit
(the kernels share their formulas: fake_quantize_math.h, mcuq_arith.h,
histogram_math.h). Two results are sums whose order differs between devices
and are compared within float rounding: the LSQ scale / zero-point
gradients and the histogram's per-bin sums (its counts are exact).

Also: opcheck on CUDA tensors, and QAT of the demo's CNN on the GPU against
the same run on the CPU. Runs where a GPU is (scripts/test_gpu.sh); skipped
as a whole elsewhere.
"""

import math
import os

import pytest
import torch

# MCUQ_TEST_DEVICE=cpu runs the file against the CPU itself: a check of the
# tests, not of the kernels, on machines without a GPU.
CUDA = torch.device(os.environ.get("MCUQ_TEST_DEVICE", "cuda"))
if CUDA.type == "cuda" and not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import _mcuq_testing as T  # noqa: E402

OPS = torch.ops.mcuq
INF = math.inf
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _equal(got, want, what=""):
    """Bit-identical values (NaN equals NaN), whatever the layout."""
    got = got.cpu()
    assert got.dtype == want.dtype, what
    assert got.shape == want.shape, what
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")


def _layouts(x):
    """The input in several layouts: contiguous, transposed, sliced
    (strided), channels-last where 4-d."""
    out = {"contiguous": x}
    if x.dim() >= 2:
        out["transposed"] = x.transpose(0, -1).contiguous().transpose(0, -1)
    if x.dim() >= 1 and x.shape[0] >= 2:
        out["sliced"] = torch.cat([x, x], 0)[::2]
    if x.dim() == 4:
        out["channels_last"] = x.contiguous(memory_format=torch.channels_last)
    return out


SHAPES = [(), (1,), (0, 3), (7,), (3, 5), (2, 3, 4, 5), (4, 6, 3, 3), (2, 8, 17)]


def _cases(seed):
    """(name, Case) for per-tensor, per-channel (several axes) and per-group
    qparams on the shapes above, with every edge value."""
    gen = torch.Generator().manual_seed(seed)
    edges = T.SAFE_EDGES + T.UNSAFE_EDGES
    for shape in SHAPES:
        for kind in ("tensor", "channel", "group"):
            if kind != "tensor" and len(shape) == 0:
                continue
            axis = int(torch.randint(0, max(len(shape), 1), (1,), generator=gen)) if shape else 0
            channels = shape[axis] if shape else 1
            group = 2 if kind == "group" and channels % 2 == 0 else 1
            if kind == "group" and group == 1:
                continue
            entries = 1 if kind == "tensor" else channels // group
            if entries == 0:
                continue
            bits = int(torch.randint(2, 17, (1,), generator=gen))
            signed = bool(torch.randint(0, 2, (1,), generator=gen))
            qmin, qmax = T.quant_range(bits, signed)
            scales = (torch.rand(entries, generator=gen) * 0.3 + 0.01).tolist()
            zps = torch.randint(qmin, qmax + 1, (entries,), generator=gen).tolist()
            case = T.make_case(shape, scales, zps, qmin, qmax, axis, group, seed=seed + len(shape), edges=edges)
            yield f"{shape}-{kind}-axis{axis}-{bits}bit", case


def _to_cuda(*ts):
    return tuple(t.to(CUDA) if isinstance(t, torch.Tensor) else t for t in ts)


# ---- fake_quantize / quantize / dequantize ---------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fake_quantize_equals_cpu(dtype):
    for name, case in _cases(1):
        for layout, x in _layouts(case.x.to(dtype)).items():
            want = OPS.fake_quantize(*case.args(x))
            got = OPS.fake_quantize(*_to_cuda(*case.args(x)))
            _equal(got, want, f"{name} {layout}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_quantize_dequantize_equal_cpu(dtype):
    for name, case in _cases(2):
        for layout, x in _layouts(case.x.to(dtype)).items():
            q_cpu = OPS.quantize(*case.args(x))
            q_cuda = OPS.quantize(*_to_cuda(*case.args(x)))
            _equal(q_cuda, q_cpu, f"quantize {name} {layout}")
            for out in (None, dtype):
                want = OPS.dequantize(q_cpu, *case.qparams(), dtype=out)
                got = OPS.dequantize(q_cpu.to(CUDA), *_to_cuda(*case.qparams()), dtype=out)
                _equal(got, want, f"dequantize {name} {layout}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("need", [(False, False), (True, False), (True, True)], ids=str)
def test_backward_equals_cpu(dtype, need):
    gen = torch.Generator().manual_seed(3)
    for name, case in _cases(3):
        for layout, x in _layouts(case.x.to(dtype)).items():
            g = torch.randn(x.shape, generator=gen).to(dtype)
            z = case.zero_point.float()
            args = (g, x, case.scale, z, case.quant_min, case.quant_max, case.axis, case.group_size, *need)
            want = OPS._fake_quantize_backward(*args)
            got = OPS._fake_quantize_backward(*_to_cuda(*args))
            _equal(got[0], want[0], f"grad_input {name} {layout}")
            # Sums over the elements, in another order on the GPU.
            tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 1e-5)
            for i, what in ((1, "grad_scale"), (2, "grad_zero_point")):
                torch.testing.assert_close(got[i].cpu(), want[i], rtol=tol, atol=tol * (1 + want[i].abs().max().item() if want[i].numel() else 1), msg=lambda m: f"{what} {name} {layout}: {m}")


def test_autograd_through_fake_quantize_on_cuda():
    case = T.make_case((4, 3, 5, 5), [0.1, 0.2, 0.05, 0.3], [0, 3, -2, 1], -128, 127, 0, seed=4)
    upstream = torch.randn(case.x.shape, generator=torch.Generator().manual_seed(5))
    results = []
    for device in ("cpu", CUDA):
        x = case.x.to(device).detach().clone().requires_grad_()
        s = case.scale.to(device).detach().clone().requires_grad_()
        z = case.zero_point.float().to(device).detach().clone().requires_grad_()
        y = OPS.fake_quantize(x, s, z, case.quant_min, case.quant_max, case.axis, case.group_size)
        y.backward(upstream.to(device))
        results.append((y.detach().cpu(), x.grad.cpu(), s.grad.cpu(), z.grad.cpu()))
    (y0, gx0, gs0, gz0), (y1, gx1, gs1, gz1) = results
    _equal(y1, y0, "output")
    _equal(gx1, gx0, "grad input")
    torch.testing.assert_close(gs1, gs0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gz1, gz0, rtol=1e-5, atol=1e-5)


# (shape, dtypes, zero point dtypes): odd sizes whose axes have strides that
# are multiples of the packet (one load per packet), 1 (channels last) and
# neither (a division per element), with a tail packet; the last is large
# enough (9.1M elements) that each GPU thread takes several packets.
WALK_CASES = [
    ((61, 25, 7, 7), (torch.float32, torch.float16), ("int32", "int64", "float32", "float64", "int16")),
    ((64, 48, 8, 8), (torch.float32, torch.float16), ("int32", "float32")),
    ((41, 47, 65, 73), (torch.float32,), ("int32",)),
]


@pytest.mark.parametrize("shape,dtypes,zero_point_dtypes", WALK_CASES, ids=lambda v: str(v) if isinstance(v, tuple) and isinstance(v[0], int) else None)
def test_fake_quantize_every_axis_and_zero_point_dtype_equals_cpu(shape, dtypes, zero_point_dtypes):
    """Per channel on every axis, contiguous and channels-last: the kernels'
    three channel walks, tails, several packets per thread, and every zero
    point dtype the kernels read."""
    gen = torch.Generator().manual_seed(11)
    base = torch.randn(shape, generator=gen) * 3
    for dtype in dtypes:
        x = base.to(dtype)
        layouts = {"contiguous": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
        for layout, xl in layouts.items():
            xd = xl.to(CUDA)
            for axis in range(4):
                channels = shape[axis]
                scale = torch.rand(channels, generator=gen) * 0.1 + 0.01
                zp = torch.randint(-20, 20, (channels,), generator=gen)
                for name in zero_point_dtypes:
                    z = zp.to(getattr(torch, name)) + (0.5 if name.startswith("float") else 0)
                    what = f"{dtype} {layout} axis {axis} zero point {name}"
                    want = OPS.fake_quantize(xl, scale, z, -128, 127, axis)
                    _equal(OPS.fake_quantize(xd, *_to_cuda(scale, z), -128, 127, axis), want, what)
                    args = (scale, z.float(), -128, 127, axis, 1, False, False)
                    want = OPS._fake_quantize_backward(xl, xl, *args)[0]
                    _equal(OPS._fake_quantize_backward(xd, xd, *_to_cuda(*args))[0], want, f"grad {what}")


def test_errors_on_cuda_name_the_entry_and_leave_the_device_usable():
    x = torch.randn(4, 5, device=CUDA)
    scale = torch.tensor([0.1, 0.2, 0.0, 0.4], device=CUDA)
    with pytest.raises(ValueError, match="expected scale to be finite.*at index 2"):
        OPS.fake_quantize(x, scale, torch.zeros(4, dtype=torch.int32, device=CUDA), -128, 127, 0)
    with pytest.raises(ValueError, match="expected zero_point to be finite.*at index 1"):
        OPS.fake_quantize(x, scale.abs() + 1, torch.tensor([0.0, math.nan, 0.0, 0.0], device=CUDA), -128, 127, 0)
    with pytest.raises(ValueError, match="expected zero_point in.*but got 300"):
        OPS.quantize(x, torch.tensor([0.5], dtype=torch.float64, device=CUDA), torch.tensor([300], dtype=torch.int16, device=CUDA), -128, 127)
    ok = OPS.fake_quantize(x, torch.tensor([0.1], device=CUDA), torch.tensor([0], device=CUDA), -128, 127)
    _equal(ok, OPS.fake_quantize(x.cpu(), torch.tensor([0.1]), torch.tensor([0]), -128, 127))


def test_errors_on_cuda():
    x = torch.randn(3, 4, device=CUDA)
    with pytest.raises(ValueError, match="expected scale to be finite"):
        OPS.fake_quantize(x, torch.tensor([-0.5], device=CUDA), torch.tensor([0], device=CUDA), -128, 127)
    with pytest.raises(ValueError, match="expected zero_point in"):
        OPS.fake_quantize(x, torch.tensor([0.5], device=CUDA), torch.tensor([300], device=CUDA), -128, 127)
    if CUDA.type == "cuda":
        with pytest.raises(ValueError, match="device"):
            OPS.fake_quantize(x, torch.tensor([0.5]), torch.tensor([0]), -128, 127)


# ---- observers -------------------------------------------------------------------


def _observer_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 5, 7, generator=gen) * 3
    with_nonfinite = x.clone()
    with_nonfinite[0, 0, :3] = torch.tensor([INF, -INF, math.nan])
    return {"finite": x, "nonfinite": with_nonfinite, "empty": torch.empty(0, 5, 7), "one": torch.tensor([2.5])}


@pytest.mark.parametrize("averaging_constant", [None, 0.1])
@pytest.mark.parametrize("axis_group", [(None, 1), (1, 1), (2, 7), (0, 2)], ids=str)
def test_observe_minmax_equals_cpu(averaging_constant, axis_group):
    axis, group = axis_group
    for name, x in _observer_inputs(5).items():
        if axis is not None and x.dim() != 3:
            continue
        n = 1 if axis is None else x.shape[axis] // group
        if n == 0:
            continue
        states = []
        for device in ("cpu", CUDA):
            state = (torch.full((n,), INF), torch.full((n,), -INF), torch.zeros(1, dtype=torch.int64))
            state = tuple(t.to(device) for t in state)
            for k in range(3):
                OPS.observe_minmax_((x * (1 + k)).to(device), *state, averaging_constant, 0 if axis is None else axis, group)
            states.append(state)
        for a, b, what in zip(states[1], states[0], ("min", "max", "count")):
            _equal(a, b, f"{name} {what}")
        lo, hi, count = OPS._finite_aminmax(x.to(CUDA), axis, group)
        want = OPS._finite_aminmax(x, axis, group)
        for a, b in zip((lo, hi, count), want):
            _equal(a, b, f"_finite_aminmax {name}")


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("power_of_two", [False, True])
def test_choose_qparams_equals_cpu(symmetric, power_of_two):
    gen = torch.Generator().manual_seed(6)
    lo = -torch.rand(33, generator=gen) * 10 ** torch.randint(-6, 6, (33,), generator=gen)
    hi = torch.rand(33, generator=gen) * 10 ** torch.randint(-6, 6, (33,), generator=gen)
    for qmin, qmax in ((-128, 127), (0, 255), (-8, 7), (-32768, 32767)):
        want = OPS.choose_qparams(lo, hi, qmin, qmax, symmetric, power_of_two)
        got = OPS.choose_qparams(lo.to(CUDA), hi.to(CUDA), qmin, qmax, symmetric, power_of_two)
        _equal(got[0], want[0], "scale")
        _equal(got[1], want[1], "zero_point")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("axis_group", [(0, 1), (1, 1), (1, 5)], ids=str)
@pytest.mark.parametrize("averaging_constant", [None, 0.01])
def test_observe_fake_quantize_equals_cpu(dtype, axis_group, averaging_constant):
    axis, group = axis_group
    per_tensor = axis == 0 and group == 1
    results = []
    for device in ("cpu", CUDA):
        n = 1 if per_tensor else 10 // group
        state = [torch.full((n,), INF), torch.full((n,), -INF), torch.zeros(1, dtype=torch.int64),
                 torch.ones(n), torch.zeros(n, dtype=torch.int32)]
        state = [t.to(device) for t in state]
        on = torch.tensor([1], dtype=torch.uint8, device=device)
        outs = []
        g = torch.Generator().manual_seed(8)
        for step in range(4):
            x = (torch.randn(8, 10, 3, 3, generator=g) * (step + 1)).to(dtype)
            if step == 2:
                x[0, 0, 0, 0] = math.nan
            x = x.to(device)
            if step == 3:
                x = x.contiguous(memory_format=torch.channels_last)
            outs.append(OPS.observe_fake_quantize(
                x, *state, on, on, averaging_constant, -128, 127, False, False, 0 if per_tensor else axis, group).cpu())
        results.append((outs, [t.cpu() for t in state]))
    (outs0, state0), (outs1, state1) = results
    for k, (a, b) in enumerate(zip(outs1, outs0)):
        _equal(a, b, f"output of step {k}")
    for a, b in zip(state1, state0):
        _equal(a, b, "state")


# ---- histogram ---------------------------------------------------------------------


def _hist_state(bins, channels, device):
    if channels is None:
        st = [torch.zeros(bins, dtype=torch.int64), torch.zeros(2, dtype=torch.float64),
              torch.tensor([INF]), torch.tensor([-INF]), torch.zeros(1, dtype=torch.int64)]
    else:
        st = [torch.zeros(channels, bins, dtype=torch.int64), torch.zeros(channels, 2, dtype=torch.float64),
              torch.full((channels,), INF), torch.full((channels,), -INF), torch.zeros(1, dtype=torch.int64)]
    st.append(torch.zeros(st[0].shape, dtype=torch.float64))
    return [t.to(device) for t in st]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", [None, 6])
@pytest.mark.parametrize("bins", [2048, 4096 + 3])
def test_observe_histogram_equals_cpu(dtype, channels, bins):
    g = torch.Generator().manual_seed(9)
    batches = [torch.randn(6, 40, 9, generator=g) * 2, torch.randn(6, 40, 9, generator=g) * 7 + 3,
               torch.relu(torch.randn(6, 40, 9, generator=g)), torch.full((6, 1, 1), 0.25)]
    batches[1][2, 3, 4] = INF
    batches[1][0, 0, 0] = math.nan
    states = {}
    for device in ("cpu", CUDA):
        st = _hist_state(bins, channels, device)
        for b in batches:
            OPS.observe_histogram_(b.to(dtype).to(device), *st[:5], 0, st[5])
        states[str(device)] = [t.cpu() for t in st]
    gpu_state = states[str(CUDA)]
    for i, what in enumerate(("histogram", "histogram_range", "min_val", "max_val", "nonfinite_count")):
        _equal(gpu_state[i], states["cpu"][i], what)
    torch.testing.assert_close(gpu_state[5], states["cpu"][5], rtol=1e-12, atol=1e-9)
    # The range searches run on the host, on the same state: equal.
    for method in ("minmax", "percentile", "mse", "entropy"):
        st_cpu = states["cpu"]
        want = OPS.histogram_range(*st_cpu[:4], -128, 127, False, method, 99.9, st_cpu[5])
        got = OPS.histogram_range(*(t.to(CUDA) for t in st_cpu[:4]), -128, 127, False, method, 99.9, st_cpu[5].to(CUDA))
        _equal(got[0], want[0], method)
        _equal(got[1], want[1], method)
    cpu = [t.clone() for t in states["cpu"]]
    gpu = [t.to(CUDA) for t in states["cpu"]]
    wider = (cpu[2] - 100, cpu[3] + 100)
    OPS._histogram_rebin_(cpu[0], cpu[1], *wider, cpu[5])
    OPS._histogram_rebin_(gpu[0], gpu[1], wider[0].to(CUDA), wider[1].to(CUDA), gpu[5])
    for a, b in zip((gpu[0], gpu[1], gpu[5]), (cpu[0], cpu[1], cpu[5])):
        _equal(a, b, "rebin")


# ---- integer ops -----------------------------------------------------------------


@pytest.mark.parametrize("rounding", ["double", "single", "shift"])
@pytest.mark.parametrize("acc_dtype", [torch.int32, torch.int64], ids=str)
def test_requantize_equals_cpu(rounding, acc_dtype):
    g = torch.Generator().manual_seed(10)
    acc = torch.randint(-(2**31), 2**31 - 1, (4, 6, 5, 3), generator=g, dtype=torch.int64).to(acc_dtype)
    real = torch.rand(6, generator=g) * 0.01
    if rounding == "shift":
        real = 2.0 ** torch.randint(-20, -2, (6,), generator=g).double()
    m, s = OPS.quantize_multiplier(real)
    m_gpu, s_gpu = OPS.quantize_multiplier(real.to(CUDA))
    _equal(m_gpu, m, "multiplier")
    _equal(s_gpu, s, "shift")
    for axis, mm, ss in ((1, m, s), (1, m[:1], s[:1])):
        want = OPS.requantize(acc, mm, ss, 3, -128, 127, axis, rounding)
        got = OPS.requantize(acc.to(CUDA), mm.to(CUDA), ss.to(CUDA), 3, -128, 127, axis, rounding)
        _equal(got, want, f"requantize axis={axis} entries={mm.numel()}")


# ---- opcheck -----------------------------------------------------------------------


def _opcheck():
    opcheck = getattr(torch.library, "opcheck", None)
    if opcheck is None:
        from torch.testing._internal.optests import opcheck
    return opcheck


@pytest.mark.parametrize("grad", ["none", "input", "scale+zero_point"])
@pytest.mark.parametrize("per", ["tensor", "channel"])
def test_opcheck_on_cuda(grad, per):
    if per == "tensor":
        case = T.make_case((3, 4), [0.1], [2], seed=30, edges=("tie", "bound", "beyond", "zero"))
    else:
        case = T.make_case((3, 4), [0.1, 0.2, 0.05, 1.0], [0, 1, -1, 5], axis=-1, seed=31, edges=("tie", "bound"))
    x, s, z = (t.to(CUDA).clone() for t in (case.x, case.scale, case.zero_point))
    if grad != "none":
        x.requires_grad_()
    if "scale" in grad:
        s.requires_grad_()
        z = z.float().requires_grad_()
    _opcheck()(OPS.fake_quantize.default, (x, s, z, case.quant_min, case.quant_max, case.axis, case.group_size))
    args = (case.x.to(CUDA), case.scale.to(CUDA), case.zero_point.to(CUDA), case.quant_min, case.quant_max, case.axis)
    _opcheck()(OPS.quantize.default, args)
    q = OPS.quantize(*args)
    _opcheck()(OPS.dequantize.default, (q, *args[1:]))
    n = s.numel()
    state = [torch.full((n,), INF, device=CUDA), torch.full((n,), -INF, device=CUDA),
             torch.zeros(1, dtype=torch.int64, device=CUDA), torch.ones(n, device=CUDA),
             torch.zeros(n, dtype=torch.int32, device=CUDA)]
    on = torch.ones(1, dtype=torch.uint8, device=CUDA)
    _opcheck()(OPS.observe_fake_quantize.default,
               (case.x.to(CUDA), *state, on, on, 0.01, -128, 127, False, False, case.axis, 1))
    _opcheck()(OPS.observe_minmax_.default, (case.x.to(CUDA), *state[:3], None, case.axis, 1))


# ---- QAT on the GPU ------------------------------------------------------------------


def test_qat_on_cuda_matches_cpu_accuracy():
    """The demo's CNN: float training, then one epoch of int8 QAT on a
    subset of Fashion-MNIST, once on the CPU and once on the GPU from the
    same weights: test accuracies within noise (1.5 pp), fake-quant and
    integer export alike."""
    import copy
    import sys
    from pathlib import Path

    import mcuq
    from mcuq.data import fashion_mnist, normalized

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))
    from fashion_mnist import SmallCnn

    try:
        train_x, train_y = fashion_mnist("train")
        test_x, test_y = fashion_mnist("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not found: {e}")
    train_x, test_x = normalized(train_x[:20000]), normalized(test_x[:5000])
    train_y, test_y = train_y[:20000], test_y[:5000]

    def epoch(model, device, lr, seed):
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
        for i in range(0, len(order), 128):
            idx = order[i : i + 128]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(train_x[idx].to(device)), train_y[idx].to(device))
            loss.backward()
            opt.step()

    def accuracy(model, device):
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(test_x[i : i + 1000].to(device)).argmax(1).cpu() for i in range(0, len(test_x), 1000)])
        return (pred == test_y).float().mean().item() * 100

    torch.manual_seed(0)
    float_model = SmallCnn().to(CUDA)
    epoch(float_model, CUDA, 0.05, 1)
    float_model = float_model.cpu()
    accs = {}
    for device in ("cpu", CUDA):
        torch.manual_seed(1)
        # Prepared from the model where it trains: the quantizers go there too.
        qat = mcuq.prepare(copy.deepcopy(float_model).to(device), mcuq.presets.get("int8"), qat=True)
        epoch(qat, device, 0.01, 2)
        accs[str(device)] = accuracy(qat, device)
    gpu = accs[str(CUDA)]
    print(f"QAT int8 test accuracy: cpu {accs['cpu']:.2f} %, {CUDA} {gpu:.2f} %")
    assert gpu > 80.0
    assert abs(gpu - accs["cpu"]) <= 1.5
