"""Non-uniform weights in the workflow: the nu4 / nu3 presets put a
CodebookFakeQuantize on every weight (a k-means codebook per output channel,
refitted as the weights train, or learned), mcuq.freeze makes it a
FixedLevelsFakeQuantize, and mcuq.export refuses it with the reason until
the integer kernels exist."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mcuq

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))
from fashion_mnist import SmallCnn  # noqa: E402


def _data(gen, n=256):
    return torch.randn(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _weight_quantizers(model, kind):
    return {name: m for name, m in model.named_modules() if isinstance(m, kind)}


@pytest.mark.parametrize("preset,levels", [("nu4", 16), ("nu3", 8)])
def test_qat_refits_a_codebook_per_channel_and_freezes_it(gen, preset, levels):
    torch.manual_seed(0)
    prepared = mcuq.prepare(SmallCnn(), mcuq.presets.get(preset), qat=True)
    quantizers = _weight_quantizers(prepared, mcuq.CodebookFakeQuantize)
    assert len(quantizers) == 3  # conv1 (+bn), conv2 (+bn), fc
    x, y = _data(gen)
    opt = torch.optim.Adam(prepared.parameters(), 1e-2)
    before = {n: q.levels.clone() for n, q in quantizers.items()}
    for i in range(0, 256, 64):
        opt.zero_grad()
        nn.functional.cross_entropy(prepared(x[i:i + 64]), y[i:i + 64]).backward()
        opt.step()
    for name, q in quantizers.items():
        assert not q.levels.requires_grad and q.levels.shape[-1] == levels
        assert not torch.equal(q.levels, before[name]), name  # refitted to the moved weights
    fc = prepared.fc
    quantized = fc.weight_fake_quant(fc.layer.weight)
    assert all(row.unique().numel() <= levels for row in quantized)
    frozen = mcuq.freeze(prepared)
    fixed = _weight_quantizers(frozen, mcuq.FixedLevelsFakeQuantize)
    assert len(fixed) == 3 and not _weight_quantizers(frozen, mcuq.CodebookFakeQuantize)
    prepared.eval()  # eval: the codebooks stay as trained
    for name, q in quantizers.items():
        assert torch.equal(dict(frozen.named_modules())[name].levels, q.levels), name
    with torch.no_grad():
        assert torch.equal(frozen.fc.weight_fake_quant(fc.layer.weight), fc.weight_fake_quant(fc.layer.weight))
        assert torch.equal(torch.jit.script(frozen)(x), frozen(x))  # TorchScript users get the same


def test_a_learned_codebook_is_a_parameter_the_optimizer_moves(gen):
    torch.manual_seed(0)
    preset = mcuq.presets.get("nu3").with_weight(codebook_learned=True)
    prepared = mcuq.prepare(SmallCnn(), preset, qat=True)
    quantizers = _weight_quantizers(prepared, mcuq.CodebookFakeQuantize)
    params = {id(p) for p in prepared.parameters()}
    assert all(q.levels.requires_grad and id(q.levels) in params for q in quantizers.values())
    x, y = _data(gen, 64)
    opt = torch.optim.SGD(prepared.parameters(), 0.1)
    start = {n: q.levels.detach().clone() for n, q in quantizers.items()}
    nn.functional.cross_entropy(prepared(x), y).backward()
    assert all(q.levels.grad is not None and q.levels.grad.abs().sum() > 0 for q in quantizers.values())
    opt.step()
    assert all(not torch.equal(q.levels.detach(), start[n]) for n, q in quantizers.items())
    frozen = mcuq.freeze(prepared)
    for q in _weight_quantizers(frozen, mcuq.FixedLevelsFakeQuantize).values():
        assert torch.all(q.levels[:, 1:] >= q.levels[:, :-1])  # frozen sorted


def test_refit_every_n_training_steps(gen):
    q = mcuq.CodebookFakeQuantize(bits=2, refit_every=3)
    w = torch.randn(4, 20, generator=gen)
    seen = []
    for step in range(7):
        q(w + step)  # the weight moves every step
        seen.append(q.levels.clone())
    changed = [step for step in range(1, 7) if not torch.equal(seen[step], seen[step - 1])]
    assert changed == [3, 6]  # fitted at steps 0, 3 and 6
    with pytest.raises(ValueError, match="expected codebook_refit_every >= 1, but got 0"):
        mcuq.presets.get("nu4").with_weight(codebook_refit_every=0)


def test_ptq_fits_the_codebook_once_and_calibrates_activations(gen):
    prepared = mcuq.prepare(SmallCnn().eval(), mcuq.presets.get("nu4"), qat=False)
    x, _ = _data(gen, 64)
    q = prepared.fc.weight_fake_quant
    levels = q.levels.clone()
    mcuq.calibrate(prepared, [x], progress=False)
    assert torch.equal(q.levels, levels)  # eval mode: the weights did not move, nor the codebook
    frozen = mcuq.freeze(prepared)
    assert len(_weight_quantizers(frozen, mcuq.FixedLevelsFakeQuantize)) == 3


def test_export_refuses_codebook_weights_with_the_reason(gen):
    prepared = mcuq.prepare(SmallCnn().eval(), mcuq.presets.get("nu4"), qat=False)
    mcuq.calibrate(prepared, [_data(gen, 32)[0]], progress=False)
    with pytest.raises(ValueError, match=r"mcuq.export: conv1.weight_fake_quant quantizes a weight onto a codebook "
                                         r"\(non-uniform, mcuq.fake_quantize_levels\): its integer export is not built"):
        mcuq.export(mcuq.freeze(prepared), [1, 1, 28, 28])


def test_presets_check_codebook_settings():
    with pytest.raises(ValueError, match=r"expected codebook in .* but got 'kmean'"):
        mcuq.presets.get("nu4").with_weight(codebook="kmean")
    with pytest.raises(ValueError, match=r"expected bits <= 8 for a codebook, but got 9"):
        mcuq.presets.get("nu4").with_weight(bits=9)


@pytest.mark.torch21
def test_pt2e_refuses_codebook_presets():
    pytest.importorskip("torchao")
    with pytest.raises(ValueError, match=r"the preset 'nu4' has codebook \(non-uniform\) weights"):
        mcuq.pt2e.Quantizer(mcuq.presets.get("nu4"))


def test_nonuniform_qat_example_prints_every_scheme(tmp_path):
    import contextlib
    import importlib.util
    import io

    path = Path(__file__).resolve().parents[2] / "examples" / "python" / "nonuniform_qat.py"
    spec = importlib.util.spec_from_file_location("nonuniform_qat", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    for name, _ in module.SCHEMES:
        assert name in out.getvalue(), out.getvalue()
