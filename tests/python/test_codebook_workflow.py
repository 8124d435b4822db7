"""Non-uniform weights in the workflow: the nu4 / nu3 presets put a
CodebookFakeQuantize on every weight (a k-means codebook per output channel,
refitted as the weights train, or learned), mcuq.freeze makes it a
FixedLevelsFakeQuantize whose codebook is snapped onto the int8 grid, and
mcuq.export stores it as b-bit indices into int8 codebooks (the generated C
against the integer reference: test_export.py and test_mcu.py, zoo models
*_nu4 / *_nu3)."""

import json
import re
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
        # Frozen: each row on the int8 grid of max |level| / 127, every level
        # within half a step of the trained one.
        snapped = dict(frozen.named_modules())[name].levels
        scale = q.levels.abs().amax(dim=1, keepdim=True) / 127
        k = snapped / scale
        assert torch.allclose(k, k.round(), atol=1e-3) and torch.all(k.round().abs().amax(dim=1) == 127), name
        assert torch.all((snapped - q.levels).abs() <= scale / 2 * (1 + 1e-5)), name
    with torch.no_grad():
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


def test_snap_levels_keeps_rows_sorted_and_zero_rows_zero():
    from mcuq.codebook import snap_levels
    levels = torch.tensor([[-1.0, -0.004, 0.0031, 0.5], [0.0, 0.0, 0.0, 0.0], [-0.3, -0.2999, 0.1, 0.2]])
    snapped = snap_levels(levels)
    assert torch.equal(snapped[1], torch.zeros(4))  # a dead channel
    assert torch.all(snapped[:, 1:] >= snapped[:, :-1])
    assert torch.equal(snapped[2, 0], snapped[2, 1])  # levels closer than a step meet
    # per tensor: one row, on the grid of 1 / 127
    assert torch.equal(snap_levels(torch.tensor([0.25, 1.0])), torch.tensor([round(0.25 * 127) / 127, 1.0]))


def test_export_stores_indices_and_codebooks(gen, tmp_path):
    prepared = mcuq.prepare(SmallCnn().eval(), mcuq.presets.get("nu3"), qat=False)
    x = _data(gen, 32)[0]
    mcuq.calibrate(prepared, [x], progress=False)
    frozen = mcuq.freeze(prepared)
    exported = mcuq.export(frozen, [1, 1, 28, 28])
    layers = {l["name"]: l for l in exported.report("net")["layers"]}
    # conv1's 9 weights per channel are smaller as int8 than as indices + an 8-level codebook
    assert layers["conv1"]["weight_bits"] == 8 and "codebook" not in layers["conv1"]
    for name in ("conv2", "fc"):
        layer = layers[name]
        assert layer["weight_bits"] == 3 and layer["codebook"]["levels"] == 8, layer
        weights = layer["weight_bytes"] * 8 / layer["bits_per_weight"]
        assert layer["codebook"]["index_bytes"] == -(-int(weights) * 3 // 8)
        assert 3 < layer["bits_per_weight"] < 4
    exported.write(tmp_path, "net")
    source = (tmp_path / "net.c").read_text()
    assert "mcuq_conv2d_s8_cb(" in source and "mcuq_fully_connected_s8_cb(" in source
    # The integer model computes the fake-quant model's weights exactly.
    o = exported.output_qparams
    with torch.no_grad():
        fake = mcuq.quantize(frozen(x), torch.tensor([o["scale"]]), torch.tensor([o["zero_point"]]),
                             o["quant_min"], o["quant_max"], dtype=torch.int32)
    assert (fake - exported.integer_reference(exported.quantize_input(x))).abs().max() <= 1


def test_export_refuses_a_codebook_off_the_int8_grid_and_on_activations():
    prepared = mcuq.prepare(nn.Sequential(nn.Linear(8, 4)).eval(), mcuq.presets.get("nu4"), qat=False)
    mcuq.calibrate(prepared, [torch.randn(16, 8)], progress=False)
    frozen = mcuq.freeze(prepared)
    (codebook,) = _weight_quantizers(frozen, mcuq.FixedLevelsFakeQuantize).values()
    levels = codebook.levels.clone()
    codebook.levels[0, 3] += 1e-3 * codebook.levels[0].abs().max()  # not a multiple of max |level| / 127
    with pytest.raises(ValueError, match=r"codebook is not on an int8 grid: level 3 of row 0 .* mcuq.freeze snaps "
                                         r"codebooks onto that grid"):
        mcuq.export(frozen, [1, 8])
    codebook.levels.copy_(levels)

    class CodebookActivation(nn.Module):
        def __init__(self):
            super().__init__()
            self.frozen = frozen

        def forward(self, x):
            return mcuq.fake_quantize_levels(self.frozen(x), torch.tensor([-1.0, 0.0, 1.0]))

    with pytest.raises(ValueError, match=r"codebooks \(mcuq.fake_quantize_levels\) quantize weights; activations "
                                         r"are quantized uniformly"):
        mcuq.export(CodebookActivation(), [1, 8])


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


def test_decode_bytes_trades_arena_for_blocks_and_stays_bit_exact(gen, tmp_path):
    import mcuq.host
    prepared = mcuq.prepare(SmallCnn().eval(), mcuq.presets.get("nu4"), qat=False)
    x = _data(gen, 32)[0]
    mcuq.calibrate(prepared, [x], progress=False)
    frozen = mcuq.freeze(prepared)
    whole = mcuq.export(frozen, [1, 1, 28, 28])  # conv2: 16 x 72 B decoded at once
    blocks = mcuq.export(frozen, [1, 1, 28, 28], decode_bytes=0)  # one channel at a time
    assert blocks.arena_bytes <= whole.arena_bytes
    levels = whole.quantize_input(x)
    for e, name in ((whole, "whole"), (blocks, "blocks")):
        e.write(tmp_path / name, "net")
        exe = mcuq.host.compile_model(tmp_path / name, "net", sanitize=True)
        assert torch.equal(mcuq.host.run_model(exe, levels, e), e.integer_reference(levels)), name
    # conv2's block_channels: all 16 (16 x 72 B decoded), or 1 at a time
    assert "&requant, 16, (int8_t *)" in (tmp_path / "whole" / "net.c").read_text()
    assert "&requant, 1, (int8_t *)" in (tmp_path / "blocks" / "net.c").read_text()
    # fc (784 -> 10, a codebook per row of 784): its inputs paired in the
    # arena (1,571 B: 2 per input, 3 to align) for the DSP pair tables, or not
    assert re.search(r"mcuq_fully_connected_s8_cb\(784, 10, .*&requant, MCUQ_DSP_KERNELS \? \(int8_t \*\)\(base \+ "
                     r"\d+\) : 0, ", (tmp_path / "whole" / "net.c").read_text())
    assert re.search(r"mcuq_fully_connected_s8_cb\(784, 10, .*&requant, 0, ", (tmp_path / "blocks" / "net.c").read_text())
    # Only DSP cores use those bytes: placed after every other buffer, so the
    # plan is otherwise the one without them (decode_bytes=1200 keeps conv2's
    # whole block, 1,152 B, but not the pairs). Here they fit in the conv
    # activations' bytes, free by then.
    no_pairs = mcuq.export(frozen, [1, 1, 28, 28], decode_bytes=1200)
    assert whole.arena_bytes == whole.arena_bytes_dsp == no_pairs.arena_bytes == no_pairs.arena_bytes_dsp
    offsets = lambda e: [layer["arena_offset"] for layer in e.report("net")["layers"]]  # noqa: E731
    assert offsets(whole) == offsets(no_pairs)
    assert f"#define NET_ARENA_SIZE {whole.arena_bytes}\n" in (tmp_path / "whole" / "net.h").read_text()
    with pytest.raises(ValueError, match="expected decode_bytes >= 0, but got -1"):
        mcuq.export(frozen, [1, 1, 28, 28], decode_bytes=-1)


def test_fc_pairs_reserve_arena_only_on_dsp_cores(gen, tmp_path):
    """A lone 784 -> 10 codebook layer: its arena is only the paired inputs
    (2 per input, 3 to align), which cores without the DSP extension (the
    host here, AVR, M0, RV32) neither use nor reserve."""
    import mcuq.host
    prepared = mcuq.prepare(nn.Sequential(nn.Linear(784, 10)).eval(), mcuq.presets.get("nu4"), qat=False)
    x = torch.randn(16, 784, generator=gen)
    mcuq.calibrate(prepared, [x], progress=False)
    e = mcuq.export(mcuq.freeze(prepared), [1, 784])
    assert (e.arena_bytes, e.arena_bytes_dsp) == (0, 2 * 784 + 3 + 1)
    e.write(tmp_path, "net")
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["arena_bytes"], report["arena_bytes_dsp"]) == (0, 1572)
    assert "#define NET_ARENA_SIZE (MCUQ_DSP_KERNELS ? 1572 : 4)\n" in (tmp_path / "net.h").read_text()
    assert "arena 0 B (1572 B on DSP cores)" in e.summary()
    exe = mcuq.host.compile_model(tmp_path, "net", sanitize=True)  # the harness allocates NET_ARENA_SIZE bytes
    levels = e.quantize_input(x)
    assert torch.equal(mcuq.host.run_model(exe, levels, e), e.integer_reference(levels))


def test_torchscript_qat_of_codebooks_then_snap_and_export(gen):
    """What a C++ program does with a model mcuq.prepare made: train it as
    TorchScript (codebooks refitted in place), turn observers off, snap the
    codebooks (snap_codebook, as mcuq.freeze does), export."""
    torch.manual_seed(0)
    prepared = mcuq.prepare(SmallCnn(), mcuq.presets.get("nu4"), qat=True)
    x, y = _data(gen, 64)
    prepared(x[:8])  # sizes the codebooks (mcuq.prepare's users run data first)
    scripted = torch.jit.script(prepared)
    quantizers = [m for _, m in scripted.named_modules() if hasattr(m, "snap_codebook")]
    assert len(quantizers) == 3
    before = [q.levels.clone() for q in quantizers]
    opt = torch.optim.SGD(scripted.parameters(), 0.1)
    scripted.train()
    nn.functional.cross_entropy(scripted(x), y).backward()
    opt.step()
    scripted(x)  # refits to the moved weights, in place
    assert all(not torch.equal(q.levels, b) for q, b in zip(quantizers, before))
    for _, m in scripted.named_modules():
        for method in ("disable_observer", "freeze_bn_stats", "snap_codebook"):
            if hasattr(m, method):
                getattr(m, method)()
    scripted.eval()
    for q in quantizers:
        k = q.levels / (q.levels.abs().amax(dim=1, keepdim=True) / 127)
        assert torch.allclose(k, k.round(), atol=1e-3)
    exported = mcuq.export(scripted, [1, 1, 28, 28])
    o = exported.output_qparams
    with torch.no_grad():
        fake = mcuq.quantize(scripted(x), torch.tensor([o["scale"]]), torch.tensor([o["zero_point"]]),
                             o["quant_min"], o["quant_max"], dtype=torch.int32)
    assert (fake - exported.integer_reference(exported.quantize_input(x))).abs().max() <= 1
