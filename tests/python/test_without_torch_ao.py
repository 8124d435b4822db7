"""mcuq needs no ``torch.ao.quantization`` (deprecated upstream, scheduled
for deletion): the whole workflow runs in a process where importing it
raises, and there mcuq's modules fall back to their own bases."""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mcuq

GONE = ("torch.ao.quantization", "torch.quantization")
# Runs in a fresh process. torch itself imports torch.ao.quantization (and
# its alias torch.quantization) on import, and TorchScript looks it up while
# scripting, so it cannot simply vanish: the modules are dropped after
# ``import torch``, and from then on any import of them that torch's own code
# does not make raises, as on a torch without the package; only then is
# mcuq imported. (test_no_source_names_torch_ao covers lookups of a module
# that torch has imported again.)
SCRIPT = textwrap.dedent(
    """
    import importlib.abc, os, sys, tempfile
    import torch
    from torch import nn

    GONE = ("torch.ao.quantization", "torch.quantization")
    TORCH_DIR = os.path.dirname(torch.__file__) + os.sep

    def importer():
        frame = sys._getframe(2)
        while frame is not None and "importlib" in frame.f_code.co_filename:
            frame = frame.f_back
        return frame.f_code.co_filename if frame is not None else ""

    class Gone(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == g or name.startswith(g + ".") for g in GONE) and not importer().startswith(TORCH_DIR):
                raise ImportError(f"{name} is gone (test)")
            return None

    for name in list(sys.modules):
        if any(name == g or name.startswith(g + ".") for g in GONE):
            del sys.modules[name]
    for parent in (torch.ao, torch):
        if "quantization" in vars(parent):
            delattr(parent, "quantization")
    sys.meta_path.insert(0, Gone())
    try:
        import torch.ao.quantization  # noqa: F401
        raise SystemExit("torch.ao.quantization still imports")
    except ImportError:
        pass

    import mcuq
    import mcuq.host
    assert not mcuq._ao.AVAILABLE
    assert not any(n == g or n.startswith(g + ".") for n in sys.modules for g in GONE), "mcuq imported it"

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )
    x = torch.randn(64, 1, 12, 12)
    y = torch.randint(0, 10, (64,))

    qconfig = mcuq.presets.int8().qconfig()
    assert type(qconfig).__module__ == "mcuq._ao", type(qconfig)
    assert isinstance(qconfig.activation(), mcuq._ao.FakeQuantizeBase)

    # PTQ: prepare, calibrate, freeze, export.
    ptq = mcuq.prepare(model.eval(), mcuq.presets.int8(), qat=False)
    mcuq.calibrate(ptq, [x[i:i + 16] for i in range(0, 64, 16)], progress=False)
    mcuq.export(mcuq.freeze(ptq), input_shape=(1, 1, 12, 12))

    # QAT: prepare, a few steps, observers off, freeze, export, host C.
    qat = mcuq.prepare(model.train(), mcuq.presets.int8(), qat=True)
    opt = torch.optim.SGD(qat.parameters(), lr=0.01)
    for step in range(6):
        opt.zero_grad()
        nn.functional.cross_entropy(qat(x[step * 8:step * 8 + 8]), y[step * 8:step * 8 + 8]).backward()
        opt.step()
    for m in qat.modules():
        if isinstance(m, mcuq._ao.FakeQuantizeBase):
            m.disable_observer()
    frozen = mcuq.freeze(qat.eval())
    exported = mcuq.export(frozen, input_shape=(1, 1, 12, 12))
    with tempfile.TemporaryDirectory() as out:
        exported.write(out, name="net")
        exe = mcuq.host.compile_model(out, "net")
        levels = exported.quantize_input(x[:16])
        c_out = mcuq.host.run_model(exe, levels, exported)
    reference = exported.integer_reference(levels)
    assert torch.equal(c_out.to(torch.int32), reference.to(torch.int32)), "host C differs from the reference"
    print("without torch.ao: ok,", len(levels), "inputs bit-exact")
    """
)


def test_workflow_runs_where_torch_ao_quantization_is_gone(tmp_path):
    env = dict(os.environ)
    package_root = str(Path(mcuq.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "without torch.ao: ok, 16 inputs bit-exact" in done.stdout, done.stdout + done.stderr


def _names_torch_ao(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.startswith(GONE) for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").startswith(GONE)
    return isinstance(node, ast.Attribute) and ast.unparse(node).startswith(GONE)


def test_no_source_names_torch_ao():
    """Only mcuq/_ao.py may import or look up the package (a lazy lookup
    elsewhere would pass the test above once torch had imported it again)."""
    package = Path(mcuq.__file__).resolve().parent
    offenders = [
        f"{source.name}:{node.lineno}"
        for source in sorted(package.rglob("*.py")) if source.name != "_ao.py"
        for node in ast.walk(ast.parse(source.read_text())) if _names_torch_ao(node)
    ]
    assert not offenders


def test_modules_subclass_torch_ao_bases_where_it_exists():
    """Where the package exists, mcuq plugs into it as before."""
    from torch.ao.quantization import FakeQuantizeBase, ObserverBase, QConfig

    assert mcuq._ao.AVAILABLE
    assert issubclass(mcuq.FakeQuantize, FakeQuantizeBase)
    assert issubclass(mcuq.LearnableFakeQuantize, FakeQuantizeBase)
    assert issubclass(mcuq.MinMaxObserver, ObserverBase)
    assert issubclass(mcuq.HistogramObserver, ObserverBase)
    assert isinstance(mcuq.presets.int8().qconfig(), QConfig)
