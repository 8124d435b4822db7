// The exporter: a frozen model (mcuq.freeze, then a TorchScript model traced
// or scripted *before* torch.jit.freeze, which would fold the weight
// quantizers away, or the op program mcuq.export writes for a torch.export
// ExportedProgram) lowered to an integer graph, executed by a LibTorch
// integer reference and written as C99 tables + an invoke function for the
// mcuq runtime (csrc/runtime). docs/EXPORT.md documents the rules.
#pragma once

#include "mcuq/export/graph.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/custom_class.h>

#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace mcuq {

struct ExportOptions {
  // Requantization rounding of layers whose multipliers are not powers of
  // two: "double" (TFLite's default, gemmlowp) or "single"
  // (TFLITE_SINGLE_ROUNDING). Power-of-two multipliers always use a
  // rounding shift.
  std::string rounding = "double";
  // How generated files name the model (default: its path or class name).
  std::string source;
  // Codebook and W4A8 convolutions decode at most this many bytes of int8
  // weights into the arena at a time (at least one channel's): RAM against
  // speed, since each block gathers the input columns again. Their fully
  // connected layers pair their inputs there (2 bytes per input) for the
  // DSP cores' pair tables if that fits.
  int64_t decode_bytes = 4096;
};

class ExportedModel : public torch::CustomClassHolder {
 public:
  ExportedModel(exporter::Graph graph, std::string source);

  const exporter::Graph& graph() const { return graph_; }
  const exporter::ArenaPlan& arena() const { return arena_; }

  // Float input [N, ...] -> integer levels (int32) through the model's input
  // quantizer, exactly as its fake-quantizer rounds.
  at::Tensor quantize_input(const at::Tensor& input) const;
  // Integer output levels -> float32 through the output qparams.
  at::Tensor dequantize_output(const at::Tensor& output) const;
  // The integer graph run with LibTorch integer arithmetic: input levels
  // [N, ...] (any integer dtype) -> output levels (int32).
  at::Tensor integer_reference(const at::Tensor& q_input) const;
  // Every tensor of the graph (levels, int32), in tensor order.
  std::vector<at::Tensor> integer_reference_all(const at::Tensor& q_input) const;

  // Writes NAME.h, NAME.c and report.json into `directory` (created if its
  // parent exists). All files are written to temporaries first and each is
  // renamed over its target (atomically) only once every one is complete, so
  // a failed write leaves no partial file and the previous files intact.
  void write(const std::string& directory, const std::string& name) const;
  std::string c_header(const std::string& name) const;
  std::string c_source(const std::string& name) const;
  std::string report_json(const std::string& name) const;
  // vectors.h for the MCU firmware harness (examples/mcu): the input levels
  // [N, ...] and the integer reference's outputs for them, as const tables.
  std::string c_test_vectors(const std::string& name, const at::Tensor& q_input) const;
  // The summary table the CLI prints (layers, flash bytes, arena, MACs).
  std::string summary() const;

  // Totals.
  int64_t flash_bytes() const;  // const tables: weights, biases, multipliers, LUTs
  int64_t arena_bytes() const { return arena_.arena_bytes; }
  // With the inputs fully connected codebook layers pair on DSP cores.
  int64_t arena_bytes_dsp() const { return arena_.arena_bytes_dsp; }
  int64_t macs() const;

 private:
  exporter::Graph graph_;
  exporter::ArenaPlan arena_;
  std::string source_;
};

// Lowers `module` for an input of `input_shape` ([N, C, H, W] or [N, F]).
// `sample` (float, that shape up to N; undefined: uniform random in the
// input quantizer's range) is run through the model to find shapes and the
// per-layer SQNR in the report. Anything the exporter cannot lower is a
// ValueError naming the node and its source line.
c10::intrusive_ptr<ExportedModel> export_model(
    const torch::jit::Module& module,
    const std::vector<int64_t>& input_shape,
    const ExportOptions& options = {},
    const at::Tensor& sample = {});
c10::intrusive_ptr<ExportedModel> export_model(
    const std::string& path,
    const std::vector<int64_t>& input_shape,
    const ExportOptions& options = {},
    const at::Tensor& sample = {});

// Lowers an op program: what mcuq.export (Python) writes, with torch.save,
// for a torch.export ExportedProgram (.pt2), whose files only Python reads.
// The rules and the integer graph are the TorchScript path's: the same frozen
// model gives the same C either way.
c10::intrusive_ptr<ExportedModel> export_program(
    const std::string& path,
    const std::vector<int64_t>& input_shape,
    const ExportOptions& options = {},
    const at::Tensor& sample = {});

}  // namespace mcuq
