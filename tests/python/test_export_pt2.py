"""torch.export as the exporter's input: an ExportedProgram (or its .pt2
file) gives the same integer graph and bit-identical C as the TorchScript
path, for every zoo model; what it cannot lower is refused clearly."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mcuq
from _export_zoo import ZOO, ZooModel, frozen

pytestmark = pytest.mark.torch21

REPO = Path(__file__).resolve().parents[2]


def _program(model: nn.Module, shape, **kwargs):
    with torch.no_grad():
        return torch.export.export(model.eval(), (torch.randn(*shape),), **kwargs)


def _assert_same_export(a: mcuq.ExportedModel, b: mcuq.ExportedModel, inputs: torch.Tensor) -> None:
    assert a.c_source("net") == b.c_source("net")
    assert a.c_header("net") == b.c_header("net")
    levels = a.quantize_input(inputs)
    assert torch.equal(levels, b.quantize_input(inputs))
    assert torch.equal(a.integer_reference(levels), b.integer_reference(levels))
    layers = [{k: v for k, v in layer.items() if k not in ("source", "sqnr_db")} for layer in a.report()["layers"]]
    assert layers == [{k: v for k, v in layer.items() if k not in ("source", "sqnr_db")}
                      for layer in b.report()["layers"]]


@pytest.mark.parametrize("model", ZOO, ids=[m.name for m in ZOO])
def test_exported_program_gives_the_traced_models_c(model: ZooModel):
    frozen_model = frozen(model)
    traced = mcuq.export(frozen_model, model.input_shape, rounding=model.rounding)
    program = mcuq.export(_program(frozen_model, model.input_shape), model.input_shape, rounding=model.rounding)
    inputs = torch.randn(64, *model.input_shape[1:]) * 2
    _assert_same_export(traced, program, inputs)
    # Its own ops, not TorchScript's, were lowered.
    assert any(layer["source"].startswith(("aten::conv2d", "aten::conv_transpose2d", "aten::linear"))
               for layer in program.report()["layers"])


def test_pt2_and_torchscript_files_give_identical_files_from_the_cli(tmp_path):
    model = next(m for m in ZOO if m.name == "residual_cnn")
    frozen_model = frozen(model)
    with torch.no_grad():
        torch.jit.trace(frozen_model.eval(), torch.randn(*model.input_shape)).save(str(tmp_path / "net.pt"))
    torch.export.save(_program(frozen_model, model.input_shape), str(tmp_path / "net.pt2"))
    shape = ",".join(map(str, model.input_shape))
    for suffix in ("pt", "pt2"):
        run = subprocess.run([sys.executable, "-m", "mcuq.export", str(tmp_path / f"net.{suffix}"), "--input-shape",
                              shape, "-o", str(tmp_path / suffix)], capture_output=True, text=True, cwd=REPO)
        assert run.returncode == 0, run.stderr
        assert "files:" in run.stdout
    for name in ("net.c", "net.h"):
        assert (tmp_path / "pt" / name).read_bytes() == (tmp_path / "pt2" / name).read_bytes()
    assert "from net." in (tmp_path / "pt2" / "net.c").read_text()


def test_dynamic_batch_takes_a_sample_of_any_size():
    model = next(m for m in ZOO if m.name == "fashion_cnn")
    frozen_model = frozen(model)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = _program(frozen_model, [2, *model.input_shape[1:]], dynamic_shapes=({0: batch},))
    sample = torch.randn(40, *model.input_shape[1:])
    traced = mcuq.export(frozen_model, model.input_shape, sample=sample)
    exported = mcuq.export(program, model.input_shape, sample=sample)
    _assert_same_export(traced, exported, sample)
    assert [layer["sqnr_db"] for layer in traced.report()["layers"]] == \
        [layer["sqnr_db"] for layer in exported.report()["layers"]]


def test_fixed_batch_and_shape_mismatches_are_refused():
    model = next(m for m in ZOO if m.name == "mlp")
    program = _program(frozen(model), [1, 64])
    with pytest.raises(ValueError, match=r"fixed batch of 1, but the sample has 8.*torch.export.Dim"):
        mcuq.export(program, [1, 64], sample=torch.randn(8, 64))
    with pytest.raises(ValueError, match=r"exported for inputs of shape \[1, 64\], but got input_shape \[1, 32\]"):
        mcuq.export(program, [1, 32])


def test_a_model_that_still_observes_is_refused():
    model = next(m for m in ZOO if m.name == "mlp")
    prepared = mcuq.prepare(model.make().eval(), mcuq.presets.int8(), qat=False)
    with pytest.raises(ValueError, match=r"updates .* when it runs; export a frozen model"):
        mcuq.export(_program(prepared, [1, 64]), [1, 64])


def test_unfrozen_float_weights_are_refused_naming_the_layer():
    class Float(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            x = mcuq.fake_quantize(x, torch.tensor([0.1]), torch.tensor([0], dtype=torch.int32), -128, 127)
            return self.fc(x)

    with pytest.raises(ValueError, match=r"cannot lower fc \(aten::linear, .*\.py:\d+\): its weight is a float"):
        mcuq.export(_program(Float(), [1, 8]), [1, 8])


def test_unsupported_op_is_refused_naming_it():
    class CumulativeSum(nn.Module):
        def forward(self, x):
            x = mcuq.fake_quantize(x, torch.tensor([0.1]), torch.tensor([0], dtype=torch.int32), -128, 127)
            return torch.cumsum(x, dim=1)

    with pytest.raises(ValueError, match=r"cannot lower cumsum \(aten::cumsum, .*\): this operation is not supported"):
        mcuq.export(_program(CumulativeSum(), [1, 8]), [1, 8])


def test_two_inputs_are_refused():
    class Two(nn.Module):
        def forward(self, x, y):
            return x + y

    program = torch.export.export(Two(), (torch.randn(1, 4), torch.randn(1, 4)))
    with pytest.raises(ValueError, match="expected a program with one input"):
        mcuq.export(program, [1, 4])
