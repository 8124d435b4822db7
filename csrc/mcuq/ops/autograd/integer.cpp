// Autograd of the integer-arithmetic ops: neither is differentiable.
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

TORCH_LIBRARY_IMPL(mcuq, Autograd, m) {
  // A float input that may require grad: backward through it raises.
  m.impl("quantize_multiplier", torch::autograd::autogradNotImplementedFallback());
  // Integer in, integer out: nothing to differentiate.
  m.impl("requantize", torch::CppFunction::makeFallthrough());
}
