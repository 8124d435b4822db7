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

  // Non-uniform quantization (eq. 3 of the method review): each value maps
  // to one of n sorted float32 levels, per tensor ([n]) or per group of
  // channels along axis ([groups, n]); thresholds default to the midpoints.
  m.def(
      "fake_quantize_levels(Tensor input, Tensor levels, Tensor? thresholds=None, int axis=0, "
      "int group_size=1) -> Tensor");
  m.def(
      "quantize_levels(Tensor input, Tensor levels, Tensor? thresholds=None, int axis=0, "
      "int group_size=1, ScalarType? dtype=None) -> Tensor");
  m.def(
      "dequantize_levels(Tensor input, Tensor levels, int axis=0, int group_size=1, "
      "ScalarType? dtype=None) -> Tensor");
  // Codebooks: the uniform grid of (scale, zero_point) with the thresholds
  // that make fake_quantize_levels equal fake_quantize bit for bit, and the
  // non-uniform generators fitted to data (docs/OPS.md).
  m.def(
      "uniform_levels(Tensor scale, Tensor zero_point, int quant_min, int quant_max) -> "
      "(Tensor levels, Tensor thresholds)");
  m.def(
      "fit_levels(Tensor input, int bits, str method, int? axis=None, int group_size=1, "
      "int iterations=100) -> (Tensor levels, Tensor thresholds)");

  // Ranges and qparams. State ops update observer buffers in place, so that
  // observers are plain tensors: scriptable, serializable, usable from C++.
  m.def(
      "choose_qparams(Tensor min_val, Tensor max_val, int quant_min, int quant_max, "
      "bool symmetric, bool power_of_two=False) -> (Tensor scale, Tensor zero_point)");
  m.def(
      "observe_minmax_(Tensor input, Tensor(a!) min_val, Tensor(b!) max_val, "
      "Tensor(c!) nonfinite_count, float? averaging_constant=None, int axis=0, "
      "int group_size=1) -> ()");
  // histogram_sum (the sum of each bin's values: "mse" places each bin's mass
  // around its mean) is optional and last, so that older callers and saved
  // TorchScript models keep working.
  m.def(
      "observe_histogram_(Tensor input, Tensor(a!) histogram, Tensor(b!) histogram_range, "
      "Tensor(c!) min_val, Tensor(d!) max_val, Tensor(e!) nonfinite_count, int axis=0, "
      "Tensor(f!)? histogram_sum=None) -> ()");
  m.def(
      "histogram_range(Tensor histogram, Tensor histogram_range, Tensor min_val, "
      "Tensor max_val, int quant_min, int quant_max, bool symmetric, str method=\"mse\", "
      "float percentile=99.99, Tensor? histogram_sum=None) -> (Tensor range_min, Tensor range_max)");
  // Private: re-bins a histogram (and its sums) exactly onto the canonical
  // grid that also covers [min_val, max_val] (per channel), so that
  // histograms can be summed.
  m.def(
      "_histogram_rebin_(Tensor(a!) histogram, Tensor(b!) histogram_range, Tensor min_val, "
      "Tensor max_val, Tensor(c!)? histogram_sum=None) -> ()");
  m.def(
      "observe_fake_quantize(Tensor input, Tensor(a!) min_val, Tensor(b!) max_val, "
      "Tensor(c!) nonfinite_count, Tensor(d!) scale, Tensor(e!) zero_point, "
      "Tensor observer_enabled, Tensor fake_quant_enabled, float? averaging_constant, "
      "int quant_min, int quant_max, bool symmetric, bool power_of_two=False, int axis=0, "
      "int group_size=1) -> Tensor");
  m.def(
      "fake_quantize_dynamic(Tensor input, int quant_min, int quant_max, bool symmetric, "
      "int? axis=None) -> Tensor");
  // Private: min and max of the finite values, per tensor or per (group of)
  // slices along axis (+inf/-inf where there is none), and how many values
  // were not finite.
  m.def(
      "_finite_aminmax(Tensor input, int? axis=None, int group_size=1) -> "
      "(Tensor min_val, Tensor max_val, Tensor nonfinite_count)");

  // Integer arithmetic of the exported model (csrc/runtime/mcuq_arith.h):
  // TFLite's QuantizeMultiplier, and requantization of int32/int64
  // accumulators to an integer range with per-tensor or per-channel
  // multipliers ("double": gemmlowp double rounding, TFLite's default;
  // "single": one rounding; "shift": power-of-two multipliers).
  m.def("quantize_multiplier(Tensor real_multiplier) -> (Tensor multiplier, Tensor shift)");
  m.def(
      "requantize(Tensor input, Tensor multiplier, Tensor shift, int zero_point, int quant_min, "
      "int quant_max, int axis=1, str rounding=\"double\") -> Tensor");

  // Private: the gradient of fake_quantize. Returns (grad_input, grad_scale, grad_zero_point);
  // the last two are zeros unless asked for.
  m.def(
      "_fake_quantize_levels_backward(Tensor grad, Tensor input, Tensor levels, Tensor? thresholds, "
      "int axis, int group_size, bool need_levels_grad) -> (Tensor, Tensor)");
  m.def(
      "_fake_quantize_backward(Tensor grad, Tensor input, Tensor scale, Tensor zero_point, "
      "int quant_min, int quant_max, int axis, int group_size, bool need_scale_grad, "
      "bool need_zero_point_grad) -> (Tensor, Tensor, Tensor)");
}
