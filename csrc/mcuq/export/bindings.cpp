// ExportedModel as a TorchScript custom class, so Python (mcuq.export) and
// TorchScript reach the C++ exporter through torch.classes.mcuq, with no
// Python binding library.
#include "mcuq/export.h"

#include <torch/custom_class.h>
#include <torch/library.h>

namespace mcuq {
namespace {

// `source` names the model in generated files (default: the path).
ExportOptions options_of(std::string rounding, std::string source, int64_t decode_bytes) {
  ExportOptions options;
  options.rounding = std::move(rounding);
  options.source = std::move(source);
  options.decode_bytes = decode_bytes;
  return options;
}

// A TorchScript file.
c10::intrusive_ptr<ExportedModel> load_and_export(const std::string& path, std::vector<int64_t> input_shape,
                                                  std::string rounding, c10::optional<at::Tensor> sample,
                                                  std::string source, int64_t decode_bytes) {
  return export_model(path, input_shape, options_of(std::move(rounding), std::move(source), decode_bytes),
                      sample.value_or(at::Tensor()));
}

// An op program (mcuq.export writes it for a torch.export ExportedProgram).
c10::intrusive_ptr<ExportedModel> load_program_and_export(const std::string& path, std::vector<int64_t> input_shape,
                                                          std::string rounding, c10::optional<at::Tensor> sample,
                                                          std::string source, int64_t decode_bytes) {
  return export_program(path, input_shape, options_of(std::move(rounding), std::move(source), decode_bytes),
                        sample.value_or(at::Tensor()));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mcuq, m) {
  m.class_<ExportedModel>("ExportedModel")
      .def_static("load", &load_and_export)
      .def_static("load_program", &load_program_and_export)
      .def("quantize_input", &ExportedModel::quantize_input)
      .def("dequantize_output", &ExportedModel::dequantize_output)
      .def("integer_reference", &ExportedModel::integer_reference)
      .def("integer_reference_all", &ExportedModel::integer_reference_all)
      .def("write", &ExportedModel::write)
      .def("c_header", &ExportedModel::c_header)
      .def("c_source", &ExportedModel::c_source)
      .def("report_json", &ExportedModel::report_json)
      .def("c_test_vectors", &ExportedModel::c_test_vectors)
      .def("summary", &ExportedModel::summary)
      .def("flash_bytes", &ExportedModel::flash_bytes)
      .def("arena_bytes", &ExportedModel::arena_bytes)
      .def("arena_bytes_dsp", &ExportedModel::arena_bytes_dsp)
      .def("macs", &ExportedModel::macs)
      .def("__getstate__", [](const c10::intrusive_ptr<ExportedModel>&) -> int64_t {
        TORCH_CHECK(false, "mcuq.export: an ExportedModel cannot be serialized; export again from the model file");
      })
      .def("__setstate__", [](int64_t) -> c10::intrusive_ptr<ExportedModel> {
        TORCH_CHECK(false, "mcuq.export: an ExportedModel cannot be serialized");
      });
}

}  // namespace mcuq
