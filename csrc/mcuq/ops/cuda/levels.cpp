// CUDA registration of the non-uniform ops: the device-generic
// implementations of levels_composite.cpp (ATen's searchsorted, gather and
// scatter_add kernels), which tests/cpp checks against the CPU kernels.
#include "mcuq/ops/levels_composite.h"

#include <torch/library.h>

namespace mcuq::ops {

TORCH_LIBRARY_IMPL(mcuq, CUDA, m) {
  m.impl("fake_quantize_levels", &levels_composite::fake_quantize_levels);
  m.impl("quantize_levels", &levels_composite::quantize_levels);
  m.impl("dequantize_levels", &levels_composite::dequantize_levels);
  m.impl("_fake_quantize_levels_backward", &levels_composite::fake_quantize_levels_backward);
  m.impl("uniform_levels", &levels_composite::uniform_levels);
  m.impl("fit_levels", &levels_composite::fit_levels);
}

}  // namespace mcuq::ops
