"""Build an exported model into firmware for an emulated MCU, run it, and
check it against the host integer reference (tests and ./scripts/demo.sh).

    from mcu import TARGETS, evaluate_on_target, run_on_target
    # A whole test set streamed through one emulator (host in the loop):
    result = evaluate_on_target("cortex-m4", exported, export_dir, "net", images, labels)
    assert result.matches == result.inputs        # every output level = host's
    print(result.accuracy, result.count_median, result.stack_bytes)
    # A few inputs compiled into the firmware with their golden outputs:
    result = run_on_target("cortex-m4", exported, export_dir, "net", inputs)
    assert result.bit_exact == result.vectors

Targets: Cortex-M0 (QEMU micro:bit), M3 (mps2-an385), M4 (mps2-an386), M7
(mps2-an500), under ``qemu-system-arm`` with semihosting and our TCG plugin
counting executed instructions exactly (cortex_m/icount_plugin.c);
ATmega328P under simavr with our runner (exact cycles); RISC-V RV32IMAC
under ``qemu-system-riscv32 -M virt`` with the same plugin. The
firmware of run_on_target (common/mcu_main.c) compares every output level
with the golden outputs compiled into it and exits with the number of
mismatching inputs; that of evaluate_on_target (common/stream_main.c) reads
its inputs from the host and writes its outputs back (semihosting files on
QEMU, an I/O register of our simavr runner on the AVR), and the host
compares. Both measure the stack's peak (painted stack) on every target.

As a script: ``python examples/mcu/mcu.py --sizes`` prints the runtime's code
size per target.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUNTIME = REPO / "csrc" / "runtime"
HARNESS = REPO / "ops" / "mcuq" / "harness"  # model_symbols.h, shared with the host harness
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


@dataclass(frozen=True)
class Target:
    name: str
    family: str  # "cortex_m" or "avr"
    cpu: str  # -mcpu / -mmcu
    machine: str  # QEMU machine, or simavr MCU
    flash_bytes: int  # the part's flash, for "fits"
    ram_bytes: int
    clock_hz: int  # the CPU clock (AVR: simavr runs at it; informational on QEMU)
    description: str


TARGETS: Dict[str, Target] = {
    t.name: t for t in [
        Target("cortex-m0", "cortex_m", "cortex-m0", "microbit", 256 * 1024, 16 * 1024, 16_000_000,
               "Cortex-M0 (nRF51, QEMU micro:bit)"),
        # QEMU's only Cortex-M0 board has 16 KB of RAM: models that need more
        # run the M0's code (ARMv6-M, no DSP) on an M3 board's 4 MB, which
        # executes the same instructions; the counts are the M0 code's.
        Target("cortex-m0-4mb", "cortex_m", "cortex-m0", "mps2-an385", 4 << 20, 4 << 20, 25_000_000,
               "Cortex-M0 code on QEMU mps2-an385's memory"),
        Target("cortex-m3", "cortex_m", "cortex-m3", "mps2-an385", 4 << 20, 4 << 20, 25_000_000,
               "Cortex-M3 (QEMU mps2-an385)"),
        Target("cortex-m4", "cortex_m", "cortex-m4", "mps2-an386", 4 << 20, 4 << 20, 25_000_000,
               "Cortex-M4 (QEMU mps2-an386)"),
        Target("cortex-m7", "cortex_m", "cortex-m7", "mps2-an500", 4 << 20, 4 << 20, 25_000_000,
               "Cortex-M7 (QEMU mps2-an500)"),
        Target("atmega328p", "avr", "atmega328p", "atmega328p", 32 * 1024, 2 * 1024, 16_000_000,
               "AVR ATmega328P (simavr, 2 KB RAM, 32 KB flash)"),
        # The image runs from RAM; no C library needed (so no 1 GB picolibc).
        Target("rv32", "riscv", "rv32imac", "virt", 16 << 20, 16 << 20, 0, "RISC-V RV32IMAC (QEMU virt)"),
    ]
}

TOOLS = {
    "cortex_m": ["arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm", "cc"],
    "avr": ["avr-gcc", "avr-size", "cc"],
    "riscv": ["riscv64-unknown-elf-gcc", "riscv64-unknown-elf-size", "riscv64-unknown-elf-nm",
              "qemu-system-riscv32", "cc"],
}
PREFIX = {"cortex_m": "arm-none-eabi-", "avr": "avr-", "riscv": "riscv64-unknown-elf-"}


def available(target_name: str) -> bool:
    """Whether the target's toolchain and emulator are installed."""
    return all(shutil.which(tool) for tool in TOOLS[TARGETS[target_name].family])


class ToolchainMissing(RuntimeError):
    pass


def check_tools(target: Target) -> None:
    missing = [tool for tool in TOOLS[target.family] if shutil.which(tool) is None]
    if missing:
        raise ToolchainMissing(f"mcu: {target.name} needs {', '.join(missing)}; run ./scripts/setup.sh")


@dataclass
class RunResult:
    target: str
    vectors: int
    bit_exact: int
    classes: List[int]
    counts: List[int]
    unit: str
    flash_bytes: int
    ram_bytes: int
    output: str
    exit_code: int
    sections: Dict[str, int] = field(default_factory=dict)
    stack_bytes: Optional[int] = None  # measured peak (painted stack)
    stack_overflow: bool = False

    @property
    def count_per_inference(self) -> int:
        return min(self.counts) if self.counts else 0


def _run(command: Sequence[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, **kwargs)


def _sizes(size_tool: str, elf: Path) -> Dict[str, int]:
    result = _run([size_tool, "-A", elf])
    sections = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    return sections


def build_firmware(target: Target, export_dir: Path, name: str, work: Path, optimize: str = "-Os") -> Path:
    """Compiles NAME.c + the runtime + the harness (+ vectors.h in work/)
    with ``optimize`` (-Os: what fits a part; bench/bench_mcu.py uses -O2)."""
    flags = [f"-DMCUQ_MODEL={name}", f"-DMCUQ_MODEL_UPPER={name.upper()}", f'-DMCUQ_MODEL_HEADER="{name}.h"',
             "-I", work, "-I", export_dir]
    sources = [export_dir / f"{name}.c", *sorted(RUNTIME.glob("*.c")), HERE / "common" / "mcu_main.c"]
    return build_program(target, sources, flags, work / f"{name}-{target.name}.elf", optimize)


def build_program(target: Target, sources: Sequence[Path], flags: Sequence, elf: Path, optimize: str = "-Os") -> Path:
    """Compiles ``sources`` (one with main(), using common/platform.h) for
    the target with its startup code and console; returns the ELF."""
    check_tools(target)
    common = [*WARNINGS, optimize, "-ffunction-sections", "-fdata-sections", "-DMCUQ_NO_FLOAT", *flags,
              "-I", RUNTIME, "-I", HERE / "common", "-I", HARNESS]
    if target.family == "cortex_m":
        command = ["arm-none-eabi-gcc", f"-mcpu={target.cpu}", "-mthumb", "-mfloat-abi=soft", *common,
                   *sources, HERE / "cortex_m" / "startup.c",
                   HERE / "cortex_m" / "semihost.c", HERE / "common" / "semihosting.c", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                   "-T", HERE / "cortex_m" / "cortex_m.ld",
                   f"-Wl,--gc-sections,--defsym=FLASH_SIZE={target.flash_bytes},--defsym=RAM_SIZE={target.ram_bytes}",
                   "-o", elf]
    elif target.family == "riscv":
        command = ["riscv64-unknown-elf-gcc", f"-march={target.cpu}", "-mabi=ilp32", "-mcmodel=medany", *common,
                   "-ffreestanding", *sources, HERE / "riscv" / "startup.c", HERE / "riscv" / "semihost.c",
                   HERE / "common" / "semihosting.c",
                   "-nostdlib", "-nostartfiles", "-T", HERE / "riscv" / "riscv.ld",
                   f"-Wl,--gc-sections,--defsym=RAM_SIZE={target.ram_bytes}", "-lgcc", "-o", elf]
    else:
        command = ["avr-gcc", f"-mmcu={target.cpu}", *common, f"-DF_CPU={target.clock_hz}UL", *sources,
                   HERE / "avr" / "platform.c", "-Wl,--gc-sections", "-o", elf]
    result = _run(command)
    if result.returncode != 0:
        raise RuntimeError(f"mcu: building for {target.name} failed:\n{' '.join(map(str, command))}\n{result.stderr}")
    return elf


def _stale(target: Path, source: Path) -> bool:
    return not target.exists() or target.stat().st_mtime < source.stat().st_mtime


def simavr_runner(work: Path) -> Path:
    """Builds the libsimavr host runner (once per work folder)."""
    runner = work / "simavr_runner"
    if _stale(runner, HERE / "avr" / "simavr_runner.c"):
        result = _run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", HERE / "avr" / "simavr_runner.c",
                       "-lsimavr", "-o", runner])
        if result.returncode != 0:
            raise ToolchainMissing(f"mcu: building the simavr runner failed (libsimavr-dev?):\n{result.stderr}")
    return runner


def icount_plugin(work: Path) -> Path:
    """Builds the instruction-counting QEMU plugin (once per work folder)."""
    plugin = work / "icount_plugin.so"
    if _stale(plugin, HERE / "cortex_m" / "icount_plugin.c"):
        result = _run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC",
                       HERE / "cortex_m" / "icount_plugin.c", "-o", plugin])
        if result.returncode != 0:
            raise ToolchainMissing(f"mcu: building the QEMU plugin failed:\n{result.stderr}")
    return plugin


def _memory(target: Target, elf: Path):
    """(sections, flash bytes, static RAM bytes) of a firmware."""
    sections = _sizes(PREFIX[target.family] + "size", elf)
    flash = sum(v for k, v in sections.items() if k in (".text", ".data", ".ARM.exidx", ".rodata", ".vectors"))
    return sections, flash, sum(v for k, v in sections.items() if k in (".data", ".bss"))


def _stack(console: str):
    """(the stack peak the harness printed or None, whether it overflowed)."""
    peak = re.search(r"^stack: (\d+) bytes$", console, flags=re.M)
    return (int(peak.group(1)) if peak else None), bool(re.search(r"^stack: overflow$", console, flags=re.M))


def _symbol(elf: Path, name: str, nm: str = "arm-none-eabi-nm") -> str:
    for line in _run([nm, elf]).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return "0x" + parts[0]
    raise RuntimeError(f"mcu: {elf} has no symbol {name}")


def _markers(elf: Path, nm: str) -> str:
    start, stop = _symbol(elf, "mcuq_count_start", nm), _symbol(elf, "mcuq_count_stop", nm)
    if int(start, 16) == int(stop, 16):
        raise RuntimeError(f"mcu: {elf}: the count markers share an address")
    return f"start={start},stop={stop}"


def firmware_command(target: Target, elf: Path, work: Path, stream: Sequence[Path] = ()) -> List[str]:
    """The emulator's command line; ``stream``: the AVR runner's input and
    output files (QEMU's firmware opens them in its working folder)."""
    if target.family == "cortex_m":
        markers = _markers(elf, "arm-none-eabi-nm")
        command = ["qemu-system-arm", "-M", target.machine, "-nographic", "-monitor", "none", "-serial", "none",
                   "-chardev", "stdio,id=c0", "-semihosting-config", "enable=on,target=native,chardev=c0",
                   "-plugin", f"{icount_plugin(work.parent)},{markers}", "-kernel", elf]
    elif target.family == "riscv":
        markers = _markers(elf, "riscv64-unknown-elf-nm")
        command = ["qemu-system-riscv32", "-M", target.machine, "-bios", "none", "-nographic", "-monitor", "none",
                   "-serial", "none", "-chardev", "stdio,id=c0",
                   "-semihosting-config", "enable=on,target=native,chardev=c0",
                   "-plugin", f"{icount_plugin(work.parent)},{markers}", "-kernel", elf]
    else:
        command = [simavr_runner(work.parent), elf, target.machine, str(target.clock_hz)]
        if stream:
            command += [str(2 ** 63), *stream]  # no cycle limit: the host's timeout bounds it
    return [str(c) for c in command]


def run_firmware(target: Target, elf: Path, work: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return _run(firmware_command(target, elf, work), timeout=timeout)


def run_on_target(target_name: str, exported, export_dir: Path, name: str, inputs: torch.Tensor,
                  work: Optional[Path] = None, optimize: str = "-Os") -> RunResult:
    """Builds firmware that runs ``exported`` (written in export_dir as NAME)
    on ``inputs`` (float, [N, ...]) and checks it against the integer
    reference on the target; returns what it printed and measured."""
    target = TARGETS[target_name]
    work = Path(work or export_dir) / target.name
    work.mkdir(parents=True, exist_ok=True)
    levels = exported.quantize_input(inputs)
    (work / "vectors.h").write_text(exported.c_test_vectors(levels, name))
    elf = build_firmware(target, Path(export_dir), name, work, optimize)
    sections, flash, ram = _memory(target, elf)
    result = run_firmware(target, elf, work)
    text = result.stdout
    counts = [int(c) for c in re.findall(r"^input \d+: \w+.*?, (\d+) \w+$", text, flags=re.M)]
    if target.family != "avr":  # counted by the QEMU plugin
        counts = [int(c) for c in re.findall(r"^mcuq-icount: (\d+)$", result.stderr, flags=re.M)]
    classes = [int(c) for c in re.findall(r"^input \d+: .*?class (\d+)", text, flags=re.M)]
    unit = "cycles" if target.family == "avr" else "instructions"
    # Distinct inputs reported ok (a firmware that restarts and repeats does not count twice).
    bit_exact = len(set(re.findall(r"^input (\d+): ok", text, flags=re.M)))
    return RunResult(target.name, levels.shape[0], bit_exact, classes, counts, unit, flash, ram,
                     text + result.stderr, result.returncode, sections, *_stack(text))


@dataclass
class Evaluation:
    """What evaluate_on_target measured over a streamed set of inputs."""
    target: str
    inputs: int
    outputs: torch.Tensor  # the device's output levels, [N, ...] int32
    statuses: List[int]  # mcuq_status per input (0: MCUQ_OK)
    counts: List[int]  # instructions (QEMU plugin) or cycles (AVR Timer1) per inference
    unit: str
    matches: int  # inputs whose every output level equals the expected (host integer reference's)
    mismatched: List[int]  # indices of the others
    predictions: List[int]  # argmax of each output
    accuracy: Optional[float]  # % of predictions equal to the labels, when given
    flash_bytes: int  # the streaming firmware: model + runtime + harness (no test data)
    ram_bytes: int  # static: .data + .bss
    stack_bytes: Optional[int]  # measured peak (painted stack), the deepest of the shards
    stack_overflow: bool
    exit_code: int
    output: str  # what the firmware printed (every shard's)
    seconds: float
    sections: Dict[str, int] = field(default_factory=dict)

    @property
    def count_min(self) -> int:
        return min(self.counts)

    @property
    def count_median(self) -> int:
        return sorted(self.counts)[(len(self.counts) - 1) // 2]

    @property
    def count_max(self) -> int:
        return max(self.counts)

    @property
    def passed(self) -> bool:
        """Every input ran (MCUQ_OK, counted) and equals the expected outputs; no overflow."""
        return (self.exit_code == 0 and self.matches == self.inputs and len(self.counts) == self.inputs
                and all(s == 0 for s in self.statuses) and not self.stack_overflow)


def build_stream_firmware(target: Target, export_dir: Path, name: str, work: Path, optimize: str = "-Os") -> Path:
    """NAME.c + the runtime + the streaming harness (common/stream_main.c)."""
    flags = [f"-DMCUQ_MODEL={name}", f"-DMCUQ_MODEL_UPPER={name.upper()}", f'-DMCUQ_MODEL_HEADER="{name}.h"',
             "-I", export_dir]
    sources = [export_dir / f"{name}.c", *sorted(RUNTIME.glob("*.c")), HERE / "common" / "stream_main.c"]
    return build_program(target, sources, flags, work / f"{name}-{target.name}-stream.elf", optimize)


def evaluate_on_target(target_name: str, exported, export_dir: Path, name: str, inputs: torch.Tensor,
                       labels: Optional[torch.Tensor] = None, expected: Optional[torch.Tensor] = None,
                       work: Optional[Path] = None, optimize: str = "-Os", jobs: int = 1, progress: bool = True,
                       timeout: float = 3600) -> Evaluation:
    """Streams ``inputs`` (float, [N, ...]) through ``exported`` (written in
    export_dir as NAME) on the emulated target, host in the loop: one
    firmware build, one emulator process per shard (``jobs`` shards run in
    parallel; the counts do not depend on it), inputs read from the host and
    outputs written back. Compares every output level with ``expected``
    (default: the host integer reference's) and, given ``labels``, scores
    the device's predictions. A progress bar follows the outputs as they come."""
    from tqdm import tqdm

    target = TARGETS[target_name]
    work = Path(work or export_dir) / target.name
    work.mkdir(parents=True, exist_ok=True)
    export_dir = Path(export_dir)
    levels = exported.quantize_input(inputs)
    if expected is None:
        expected = exported.integer_reference(levels)
    if expected.shape[0] != levels.shape[0]:
        raise ValueError(f"mcu.evaluate_on_target: expected {levels.shape[0]} golden outputs, got {expected.shape[0]}")
    elf = build_stream_firmware(target, export_dir, name, work, optimize)
    sections, flash, ram = _memory(target, elf)

    import numpy as np

    level = np.dtype("<i2" if exported.activation_dtype == torch.int16 else "<i1")
    output_size = int(np.prod(expected.shape[1:]))
    record = np.dtype([("count", "<u4"), ("status", "<i4"), ("levels", level, (output_size,))])
    n = levels.shape[0]
    jobs = max(1, min(jobs, n))
    bounds = [n * j // jobs for j in range(jobs + 1)]
    shards = []
    start = time.perf_counter()
    for j in range(jobs):
        folder = work / f"stream-{j}"
        folder.mkdir(exist_ok=True)
        chunk = levels[bounds[j]:bounds[j + 1]].reshape(bounds[j + 1] - bounds[j], -1).numpy().astype(level)
        (folder / "mcuq_inputs.bin").write_bytes(np.uint32(chunk.shape[0]).astype("<u4").tobytes() + chunk.tobytes())
        outputs = folder / "mcuq_outputs.bin"
        outputs.unlink(missing_ok=True)
        files = (folder / "mcuq_inputs.bin", outputs) if target.family == "avr" else ()
        stdout, stderr = open(folder / "stdout.txt", "w"), open(folder / "stderr.txt", "w")
        process = subprocess.Popen(firmware_command(target, elf, work, files), cwd=folder, stdout=stdout,
                                   stderr=stderr)
        shards.append((folder, outputs, process, stdout, stderr))
    bar = tqdm(total=n, desc=f"{name} on {target.name}", unit="input", disable=not progress, leave=False)
    try:
        while any(shard[2].poll() is None for shard in shards):
            if time.perf_counter() - start > timeout:
                raise subprocess.TimeoutExpired(firmware_command(target, elf, work), timeout)
            done = sum(out.stat().st_size // record.itemsize for _, out, *_ in shards if out.exists())
            bar.update(done - bar.n)
            time.sleep(0.2)
    finally:
        for _, _, process, stdout, stderr in shards:
            if process.poll() is None:
                process.kill()
                process.wait()
            stdout.close()
            stderr.close()
        bar.close()
    seconds = time.perf_counter() - start

    records, counts, text, stacks, exit_code, overflow = [], [], "", [], 0, False
    for folder, outputs, process, *_ in shards:
        shard_text = (folder / "stdout.txt").read_text(errors="replace")
        shard_err = (folder / "stderr.txt").read_text(errors="replace")
        text += shard_text + shard_err
        exit_code = exit_code or process.returncode
        data = outputs.read_bytes() if outputs.exists() else b""
        records.append(np.frombuffer(data[:len(data) - len(data) % record.itemsize], dtype=record))
        if target.family == "avr":
            counts += records[-1]["count"].tolist()
        else:  # the QEMU plugin's count, one line per inference
            counts += [int(c) for c in re.findall(r"^mcuq-icount: (\d+)$", shard_err, flags=re.M)]
        peak, shard_overflow = _stack(shard_text)
        stacks.append(peak)
        overflow = overflow or shard_overflow
    got = np.concatenate(records)
    received = got.shape[0]
    device = torch.zeros((n, output_size), dtype=torch.int32)
    device[:received] = torch.from_numpy(got["levels"].astype(np.int32))
    statuses = got["status"].tolist() + [-1] * (n - received)  # -1: no output came back
    same = (device == expected.reshape(n, -1).to(torch.int32)).all(dim=1)
    same[received:] = False
    mismatched = (~same).nonzero().flatten().tolist()
    predictions = device.argmax(dim=1).tolist()
    accuracy = None
    if labels is not None:
        accuracy = 100.0 * sum(int(p == t) for p, t in zip(predictions, labels.tolist())) / max(n, 1)
    return Evaluation(target.name, n, device.reshape(n, *expected.shape[1:]), statuses, counts,
                      "cycles" if target.family == "avr" else "instructions", n - len(mismatched), mismatched,
                      predictions, accuracy, flash, ram, max(stacks) if None not in stacks else None, overflow,
                      exit_code, text, seconds, sections)


def runtime_code_size(target_name: str, work: Path) -> Dict[str, int]:
    """``size`` of each runtime object compiled with -Os for the target (text bytes)."""
    target = TARGETS[target_name]
    check_tools(target)
    work.mkdir(parents=True, exist_ok=True)
    arch = {"cortex_m": ["arm-none-eabi-gcc", f"-mcpu={target.cpu}", "-mthumb"],
            "avr": ["avr-gcc", f"-mmcu={target.cpu}"],
            "riscv": ["riscv64-unknown-elf-gcc", f"-march={target.cpu}", "-mabi=ilp32", "-ffreestanding"]}[target.family]
    sizes = {}
    for source in sorted(RUNTIME.glob("*.c")):
        obj = work / f"{source.stem}-{target.name}.o"
        result = _run([*arch, *WARNINGS, "-Os", "-DMCUQ_NO_FLOAT", "-ffunction-sections", "-I", RUNTIME, "-c",
                       source, "-o", obj])
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        sections = _sizes(PREFIX[target.family] + "size", obj)
        sizes[source.name] = sum(v for k, v in sections.items() if k.startswith(".text"))
    return sizes


if __name__ == "__main__":
    import tempfile

    if "--sizes" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            for name in (n for n in TARGETS if available(n)):
                sizes = runtime_code_size(name, Path(tmp))
                print(f"{name:<11} runtime text {sum(sizes.values()):6d} B  " +
                      ", ".join(f"{k} {v}" for k, v in sizes.items()))
