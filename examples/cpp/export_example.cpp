// Export from C++, without Python: load a frozen TorchScript model (for
// example the one qat_example trains and freezes), lower it to mcuq's integer
// graph, write the C code for the MCU runtime, and run the LibTorch integer
// reference on a few inputs. It also writes those inputs and the reference's
// outputs (raw levels, and vectors.h for the MCU firmware harness) so that the
// generated C can be checked against them, on the host and on an MCU.
//
//   export_example MODEL.pt N,C,H,W OUT_DIR NAME
#include <mcuq/export.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) shape.push_back(std::stoll(item));
  return shape;
}

void write_levels(const std::string& path, const at::Tensor& levels, bool int16) {
  const at::Tensor raw = levels.to(int16 ? at::kShort : at::kChar).contiguous();
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(raw.data_ptr()), static_cast<std::streamsize>(raw.nbytes()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MODEL.pt N,C,H,W OUT_DIR NAME\n", argv[0]);
    return 2;
  }
  const std::vector<int64_t> shape = parse_shape(argv[2]);
  try {
    const auto exported = mcuq::export_model(std::string(argv[1]), shape);
    exported->write(argv[3], argv[4]);
    std::printf("%s", exported->summary().c_str());

    // Eight inputs through the integer reference; the generated C must
    // compute the same levels (tests/cpp/run_exported_c.cmake checks).
    at::manual_seed(0);
    std::vector<int64_t> batch = shape;
    batch[0] = 8;
    const at::Tensor levels = exported->quantize_input(at::randn(batch));
    const at::Tensor outputs = exported->integer_reference(levels);
    const bool int16 = exported->graph().int16();
    write_levels(std::string(argv[3]) + "/test_inputs.bin", levels, int16);
    write_levels(std::string(argv[3]) + "/test_outputs.bin", outputs, int16);
    // The same vectors for the MCU firmware harness (examples/mcu): the C++
    // route all the way to an emulated Cortex-M (tests/cpp/run_on_mcu.cmake).
    std::ofstream(std::string(argv[3]) + "/vectors.h") << exported->c_test_vectors(argv[4], levels);
    std::printf("exported %s to %s/%s.{h,c}; integer reference, argmax of 8 random inputs:", argv[1], argv[3],
                argv[4]);
    const at::Tensor argmax = outputs.reshape({8, -1}).argmax(1);
    for (int64_t i = 0; i < 8; ++i) std::printf(" %lld", static_cast<long long>(argmax[i].item<int64_t>()));
    std::printf("\n");
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "%s\n", e.what_without_backtrace());
    return 1;
  }
  return 0;
}
