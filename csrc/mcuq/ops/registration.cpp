// The one place where mcuq's op schemas are declared. Kernels register
// themselves per backend: ops/cpu, ops/meta, ops/autograd.
#include <torch/library.h>

TORCH_LIBRARY(mcuq, m) {
  m.def(
      "fake_quantize(Tensor input, Tensor scale, Tensor zero_point, int quant_min, int quant_max, "
      "int axis=0, int group_size=1) -> Tensor");
  m.def(
      "quantize(Tensor input, Tensor scale, Tensor zero_point, int quant_min, int quant_max, "
      "int axis=0, int group_size=1, ScalarType? dtype=None) -> Tensor");
  m.def(
      "dequantize(Tensor input, Tensor scale, Tensor zero_point, int quant_min, int quant_max, "
      "int axis=0, int group_size=1, ScalarType? dtype=None) -> Tensor");
  // Private: the gradient of fake_quantize. Returns (grad_input, grad_scale, grad_zero_point);
  // the last two are zeros unless asked for.
  m.def(
      "_fake_quantize_backward(Tensor grad, Tensor input, Tensor scale, Tensor zero_point, "
      "int quant_min, int quant_max, int axis, int group_size, bool need_scale_grad, "
      "bool need_zero_point_grad) -> (Tensor, Tensor, Tensor)");
}
