"""QAT under ``torch.compile(fullgraph=True)`` (torch >= 2.1): a prepared
model's training steps compile without a graph break, and give the outputs,
gradients and observer state of eager mode: to the bit with ``aot_eager``
(the same kernels), within 1e-6 relative with ``inductor`` (its own)."""

import copy

import pytest
import torch
from torch import nn

import mcuq

pytestmark = pytest.mark.torch21


class Net(nn.Module):
    """Conv + BatchNorm + ReLU (a ConvBnReLU2d once prepared), a residual
    add, pooling and a linear head: the layers of the demo's CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        y = y + self.relu2(self.conv2(y))
        return self.fc(self.flatten(self.pool(y)))


def _prepared(preset: str, freeze_bn_step):
    torch.manual_seed(0)
    return mcuq.prepare(Net(), mcuq.presets.get(preset), qat=True, freeze_bn_step=freeze_bn_step)


def _train(model, steps: int):
    """``steps`` SGD steps; the outputs, the gradients of every step and the
    final parameters and buffers (observer state, BatchNorm statistics)."""
    gen = torch.Generator().manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    outputs, grads = [], []
    for _ in range(steps):
        x = torch.randn(16, 1, 12, 12, generator=gen)
        y = torch.randint(0, 10, (16,), generator=gen)
        opt.zero_grad()
        out = model(x)
        nn.functional.cross_entropy(out, y).backward()
        outputs.append(out.detach().clone())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        opt.step()
    return outputs, grads, {n: t.detach().clone() for n, t in model.state_dict().items()}


def _compare(eager, compiled, exact: bool):
    def check(a, b, what):
        assert a.shape == b.shape and a.dtype == b.dtype, what
        if exact or not a.is_floating_point():
            assert torch.equal(a, b), what
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=what)

    for step, (a, b) in enumerate(zip(eager[0], compiled[0])):
        check(a, b, f"output of step {step}")
    for step, (ga, gb) in enumerate(zip(eager[1], compiled[1])):
        assert ga.keys() == gb.keys()
        for name in ga:
            check(ga[name], gb[name], f"gradient of {name}, step {step}")
    assert eager[2].keys() == compiled[2].keys()
    for name in eager[2]:
        check(eager[2][name], compiled[2][name], f"state {name}")


class NoBatchNorm(Net):
    def __init__(self) -> None:
        super().__init__()
        self.bn1 = nn.Identity()


def _compiled_copy(model, backend):
    import torch._dynamo

    torch._dynamo.reset()
    compiled = copy.deepcopy(model)
    compiled.forward = torch.compile(compiled.forward, fullgraph=True, backend=backend)
    return compiled


@pytest.mark.parametrize("preset", ["int8", "w4a8"])
def test_qat_steps_aot_eager_equal_eager_to_the_bit(preset):
    """aot_eager runs eager's kernels: outputs, every gradient and the final
    state (observers, BatchNorm statistics, frozen at step 2) to the bit."""
    model = _prepared(preset, freeze_bn_step=2)
    compiled = _compiled_copy(model, "aot_eager")
    _compare(_train(model, 4), _train(compiled, 4), exact=True)


def test_qat_steps_inductor_within_1e6_of_eager():
    """Inductor's own kernels: within 1e-6 (relative to the largest value)
    while no value crosses a rounding boundary, as in this model without
    BatchNorm (whose decomposed statistics make some levels flip, below)."""
    torch.manual_seed(0)
    model = mcuq.prepare(NoBatchNorm(), mcuq.presets.int8(), qat=True)
    compiled = _compiled_copy(model, "inductor")
    eager, got = _train(model, 2), _train(compiled, 2)
    for step in range(2):
        for name in eager[1][step]:
            a, b = eager[1][step][name], got[1][step][name]
            assert (a - b).abs().max() <= 1e-6 * a.abs().max(), f"gradient of {name}, step {step}"
        a, b = eager[0][step], got[0][step]
        assert (a - b).abs().max() <= 1e-6 * a.abs().max(), f"output of step {step}"


def test_inductor_with_batchnorm_differs_only_at_rounding_boundaries():
    """With BatchNorm, Inductor's statistics differ from eager's in the last
    bits, so a few values land on the other side of a rounding boundary: the
    first step's outputs differ by at most one output level, in few places
    (1.25 % of them here; elsewhere by float32 rounding, as the output
    quantizer's range moved by an ulp)."""
    model = _prepared("int8", freeze_bn_step=None)
    compiled = _compiled_copy(model, "inductor")
    eager, got = _train(model, 1), _train(compiled, 1)
    step = eager[0][0] - got[0][0]
    level = float(model.get_submodule("activation_quantizer_4").scale)
    assert step.abs().max() <= level * 1.0001
    assert (step.abs() > 1e-3 * level).float().mean() < 0.05


def test_no_graph_break_in_a_prepared_model():
    """``torch._dynamo.explain`` sees one graph and no break."""
    import torch._dynamo

    torch._dynamo.reset()
    model = _prepared("int8", freeze_bn_step=None)
    explanation = torch._dynamo.explain(model)(torch.randn(4, 1, 12, 12))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
