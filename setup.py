"""The Python package ``mcuq``.

The op library is built by CMake (CMakeLists.txt holds the one source list):
build_ext configures and builds the ``mcuq`` target, then copies libmcuq.so
into the package as mcuq/lib/torch<major>.<minor>/libmcuq.so. It builds
against the torch that runs this script, in $MCUQ_BUILD_DIR (default build/);
one checkout can serve several torch versions (scripts/setup.sh's two legs).
Without network access:

    pip install --no-build-isolation --no-deps -e .
"""

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def project_version() -> str:
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"project\(mcuq VERSION ([0-9.]+)", text).group(1)


class CMakeBuild(build_ext):
    def run(self) -> None:
        for ext in self.extensions:
            self.build_extension(ext)

    def get_outputs(self):
        return [str(self._library_target(ext)) for ext in self.extensions]

    def _library_target(self, ext: Extension) -> Path:
        # The folder name comes from mcuq/_library.py, which loads the library
        # from there (read as a file: importing the package would load it).
        spec = importlib.util.spec_from_file_location("_mcuq_library", ROOT / "ops" / "mcuq" / "_library.py")
        library = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(library)
        return Path(self.get_ext_fullpath(ext.name)).parent / "lib" / library.torch_tag() / "libmcuq.so"

    def build_extension(self, ext: Extension) -> None:
        import torch

        build_dir = Path(os.environ.get("MCUQ_BUILD_DIR", ROOT / "build"))
        if not (build_dir / "CMakeCache.txt").exists():
            # A fresh build of the library alone; scripts/setup.sh configures
            # build/ with tests and examples first, and that is kept.
            configure = [
                "cmake", "-S", str(ROOT), "-B", str(build_dir),
                "-DCMAKE_BUILD_TYPE=Release",
                f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                "-DBUILD_TESTING=OFF", "-DMCUQ_BUILD_EXAMPLES=OFF",
            ]
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
            subprocess.check_call(configure)
        jobs = str(os.cpu_count() or 1)
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "mcuq", "-j", jobs])

        target = self._library_target(ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_dir / "libmcuq.so", target)  # follows the soname links
        if not self.inplace:  # a regular install also carries the C runtime sources (mcuq.runtime_dir())
            shutil.copytree(ROOT / "csrc" / "runtime", target.parents[2] / "runtime", dirs_exist_ok=True)


setup(
    name="mcuq",
    version=project_version(),
    description="Quantization for microcontrollers as PyTorch dispatcher ops",
    package_dir={"": "ops"},
    packages=["mcuq"],
    package_data={"mcuq": ["harness/*.c", "harness/*.h"]},
    # A placeholder that makes setuptools run build_ext; the real library is
    # plain libmcuq.so (no Python C API), loaded with torch.ops.load_library.
    ext_modules=[Extension("mcuq._library_placeholder", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.8",
    zip_safe=False,
)
