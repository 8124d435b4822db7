"""mcuq.pt2e: torchao's PT2E flow (torch.export, prepare_pt2e /
prepare_qat_pt2e with mcuq.pt2e.Quantizer, mcuq.pt2e.freeze) gives the same
qparams and the same C as mcuq.prepare / mcuq.freeze, for the demo CNN
(examples/python/fashion_mnist.py's SmallCnn: conv-bn-relu x2, max-pool,
flatten, linear) and a residual model (add, cat, mean), with every preset.

The generated C must be equal byte for byte, layer names included; the
frozen PT2E model also goes through the exporter's torch.export front end."""

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mcuq
from _export_zoo import AttentionCnn, ResidualCnn

pytestmark = pytest.mark.torch21



def prepare_pt2e(*args, **kwargs):
    # torchao (pinned on the primary leg) is imported when a test runs: the
    # oldest leg, which has no torchao, deselects these tests (torch21).
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e as prepare
    return prepare(*args, **kwargs)


def prepare_qat_pt2e(*args, **kwargs):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e as prepare
    return prepare(*args, **kwargs)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))
from fashion_mnist import SmallCnn  # noqa: E402

MODELS = {"small_cnn": (SmallCnn, [1, 1, 28, 28]), "residual_cnn": (ResidualCnn, [1, 1, 16, 16]),
          "attention_cnn": (AttentionCnn, [1, 2, 6, 6])}
PRESETS = ["int8", "int16x8", "w4a8", "pow2"]


def _float_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[name][0]()
    for module in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model


def _batches(name: str, n: int) -> list:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(16, *MODELS[name][1][1:], generator=generator) for _ in range(n)]


def _qparams(frozen: nn.Module) -> dict:
    return {key: value for key, value in frozen.state_dict().items() if key.rsplit(".", 1)[-1] in ("scale", "zero_point")}


def _assert_same(frozen: nn.Module, reference: nn.Module, shape: list) -> None:
    ours, theirs = _qparams(frozen), _qparams(reference)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key  # bit for bit
    e, r = mcuq.export(frozen, shape), mcuq.export(reference, shape)
    assert e.c_header("m") == r.c_header("m")
    assert e.c_source("m") == r.c_source("m")


def _ptq_pt2e(model: nn.Module, preset: mcuq.presets.Preset, batches: list, fold: bool = True) -> nn.Module:
    graph = torch.export.export(model.eval(), (batches[0],)).module()
    if fold:
        graph = mcuq.pt2e.fold_batch_norm(graph)
    prepared = prepare_pt2e(graph, mcuq.pt2e.Quantizer(preset))
    with torch.no_grad():
        for batch in batches:
            prepared(batch)
    return mcuq.pt2e.freeze(prepared)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_ptq_gives_mcuq_prepares_qparams_and_c(name, preset):
    model, batches = _float_model(name), _batches(name, 3)
    reference = mcuq.prepare(model, mcuq.presets.get(preset), qat=False)
    mcuq.calibrate(reference, batches, progress=False)
    frozen = _ptq_pt2e(model, mcuq.presets.get(preset), batches)
    _assert_same(frozen, mcuq.freeze(reference), MODELS[name][1])


def _train(model: nn.Module, batches: list) -> None:
    generator = torch.Generator().manual_seed(2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for batch in batches:
        optimizer.zero_grad()
        output = model(batch)
        labels = torch.randint(0, output.shape[1], (len(batch),), generator=generator)
        nn.functional.cross_entropy(output, labels).backward()
        optimizer.step()


@pytest.mark.parametrize("preset", ["int8", "w4a8"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_qat_gives_mcuq_prepares_qparams_and_c(name, preset):
    """QAT keeps BatchNorm in the graph; torchao trains Conv+BN with the same
    folded-weight step as mcuq.ConvBn2d, and freeze folds it as ConvBn2d.to_frozen."""
    model, batches = _float_model(name), _batches(name, 6)
    reference = mcuq.prepare(model.train(), mcuq.presets.get(preset), qat=True)
    _train(reference, batches)

    graph = torch.export.export(copy.deepcopy(model).train(), (batches[0],)).module()
    prepared = prepare_qat_pt2e(graph, mcuq.pt2e.Quantizer(mcuq.presets.get(preset), qat=True))
    _train(prepared, batches)
    frozen = mcuq.pt2e.freeze(prepared)
    _assert_same(frozen, mcuq.freeze(reference.eval()), MODELS[name][1])


def test_frozen_model_runs_torch_export_and_keeps_the_layer_names():
    model, batches = _float_model("small_cnn"), _batches("small_cnn", 2)
    frozen = _ptq_pt2e(model, mcuq.presets.int8(), batches)
    assert [name for name, _ in frozen.named_children()] == [
        "conv1", "pool", "conv2", "flatten", "fc"] + [f"activation_quantizer_{i}" for i in range(4)]
    program = torch.export.export(frozen, (batches[0],))
    assert torch.equal(program.module()(batches[1]), frozen(batches[1]))
    assert any(node.target is torch.ops.mcuq.fake_quantize.default for node in program.graph.nodes)
    # The exporter's torch.export front end gives the traced path's C.
    assert mcuq.export(program, [16, 1, 28, 28]).c_source("m") == mcuq.export(frozen, [16, 1, 28, 28]).c_source("m")


def test_prepare_pt2es_own_batch_norm_folding_differs_in_the_last_bits():
    """Why fold_batch_norm exists: torchao folds with gamma * rsqrt(var + eps),
    mcuq with gamma / sqrt(var + eps); some weight scales differ by an ulp."""
    model, batches = _float_model("small_cnn"), _batches("small_cnn", 3)
    reference = mcuq.prepare(model, mcuq.presets.int8(), qat=False)
    mcuq.calibrate(reference, batches, progress=False)
    theirs = _qparams(mcuq.freeze(reference))
    ours = _qparams(_ptq_pt2e(model, mcuq.presets.int8(), batches, fold=False))
    assert not torch.equal(ours["conv1.weight_fake_quant.scale"], theirs["conv1.weight_fake_quant.scale"])
    assert torch.allclose(ours["conv1.weight_fake_quant.scale"], theirs["conv1.weight_fake_quant.scale"],
                          rtol=1e-6, atol=0)


def test_fold_batch_norm_leaves_the_float_model_alone():
    model = _float_model("small_cnn").eval()
    before = copy.deepcopy(model.state_dict())
    graph = mcuq.pt2e.fold_batch_norm(torch.export.export(model, (torch.randn(1, 1, 28, 28),)).module())
    assert not any(node.target is torch.ops.aten.batch_norm.default for node in graph.graph.nodes)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


class _Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sort(self.fc(x)).values


def test_unsupported_operation_is_refused_naming_the_node():
    graph = torch.export.export(_Unsupported().eval(), (torch.randn(2, 4),)).module()
    with pytest.raises(ValueError, match=r"mcuq.pt2e.Quantizer: unsupported operation 'sort'"):
        prepare_pt2e(graph, mcuq.pt2e.Quantizer(mcuq.presets.int8()))


def test_bad_arguments_are_type_errors():
    with pytest.raises(TypeError, match="mcuq.pt2e.Quantizer: expected preset"):
        mcuq.pt2e.Quantizer("int8")
    with pytest.raises(TypeError, match="mcuq.pt2e.freeze: expected prepared"):
        mcuq.pt2e.freeze(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="mcuq.pt2e.fold_batch_norm: expected model"):
        mcuq.pt2e.fold_batch_norm(nn.Linear(2, 2))
