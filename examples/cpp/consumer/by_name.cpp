// Includes mcuq/mcuq.h but calls no mcuq function: the op is reached by name
// through the dispatcher, as a TorchScript model's graph does. The header's
// reference to the library must keep libmcuq linked under --as-needed.
#include <mcuq/mcuq.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <iostream>

int main() {
  const auto op = c10::Dispatcher::singleton()
                      .findSchemaOrThrow("mcuq::fake_quantize", "")
                      .typed<at::Tensor(
                          const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                          int64_t, int64_t, int64_t)>();
  const at::Tensor x = at::linspace(-1.0, 1.0, 9);
  const at::Tensor y = op.call(x, at::full({1}, 0.25), at::zeros({1}, at::kInt), -4, 3, 0, 1);
  if (!y.equal(at::fake_quantize_per_tensor_affine(x, 0.25, 0, -4, 3))) {
    std::cerr << "mismatch\n";
    return 1;
  }
  std::cout << "mcuq consumer by name: ok\n";
  return 0;
}
