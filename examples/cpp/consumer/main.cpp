// Uses mcuq from an installed package through its C++ API.
#include <mcuq/mcuq.h>

#include <ATen/ATen.h>

#include <iostream>

int main() {
  const at::Tensor x = at::linspace(-1.0, 1.0, 9);
  const at::Tensor scale = at::full({1}, 0.25);
  const at::Tensor zero_point = at::zeros({1}, at::kInt);
  const at::Tensor ours = mcuq::fake_quantize(x, scale, zero_point, -4, 3);
  const at::Tensor aten = at::fake_quantize_per_tensor_affine(x, 0.25, 0, -4, 3);
  if (!ours.equal(aten)) {
    std::cerr << "mismatch:\n" << ours << "\n" << aten << "\n";
    return 1;
  }
  std::cout << "mcuq " << mcuq::version() << ": " << ours << "\nmcuq consumer: ok\n";
  return 0;
}
