// A C++ LibTorch program using mcuq: per-channel int8 and per-group int4 fake
// quantization of a weight, the quantization error of each, and one
// straight-through gradient step.
#include <mcuq/mcuq.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>

namespace {

// Signal-to-quantization-noise ratio in dB.
double sqnr_db(const at::Tensor& x, const at::Tensor& xq) {
  return 10.0 * std::log10(x.pow(2).sum().item<double>() / (x - xq).pow(2).sum().item<double>());
}

// Symmetric scales from the absolute maximum of each group of channels.
at::Tensor symmetric_scale(const at::Tensor& w, int64_t group_size, int64_t qmax) {
  const at::Tensor amax = w.abs().view({w.size(0) / group_size, -1}).amax(1);
  return (amax / qmax).clamp_min(1e-8);
}

}  // namespace

int main() {
  at::manual_seed(0);
  const at::Tensor weight = at::randn({32, 16, 3, 3}) * at::linspace(0.01, 1.0, 32).view({32, 1, 1, 1});

  std::printf("mcuq %s\n", mcuq::version());
  std::printf("%-28s %10s\n", "weight quantizer", "SQNR (dB)");
  struct Case {
    const char* name;
    int64_t bits, group_size;
  };
  for (const Case c : {Case{"int8 per-tensor", 8, 32}, Case{"int8 per-channel", 8, 1},
                       Case{"int4 per-tensor", 4, 32}, Case{"int4 per-group (4 channels)", 4, 4},
                       Case{"int4 per-channel", 4, 1}}) {
    const int64_t qmax = (1 << (c.bits - 1)) - 1;  // narrow symmetric range [-qmax, qmax]
    const at::Tensor scale = symmetric_scale(weight, c.group_size, qmax);
    const at::Tensor zero_point = at::zeros_like(scale, at::kInt);
    const at::Tensor wq = mcuq::fake_quantize(weight, scale, zero_point, -qmax, qmax, 0, c.group_size);
    std::printf("%-28s %10.2f\n", c.name, sqnr_db(weight, wq));
  }

  // Quantization-aware training sees the quantized weight in the forward pass
  // and passes gradients straight through to the float weight.
  const at::Tensor w = weight.clone().requires_grad_();
  const at::Tensor scale = symmetric_scale(weight, 1, 127);
  const at::Tensor loss =
      mcuq::fake_quantize(w, scale, at::zeros_like(scale, at::kInt), -127, 127).pow(2).sum();
  loss.backward();
  std::printf("straight-through gradient: |grad| = %.4f, nonzero %lld of %lld\n",
              w.grad().norm().item<double>(),
              static_cast<long long>(w.grad().ne(0).sum().item<int64_t>()),
              static_cast<long long>(w.numel()));
  return 0;
}
