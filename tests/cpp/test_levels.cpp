// The non-uniform ops from C++: the CPU kernels (through the dispatcher,
// with autograd) against the device-generic implementation that CUDA runs
// (ops/levels_composite.cpp), bit for bit on the CPU; uniform codebooks
// against fake_quantize; gradients to a learned codebook.
#include "mcuq/mcuq.h"
#include "mcuq/ops/levels_composite.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

namespace {

namespace composite = mcuq::ops::levels_composite;

at::Tensor with_specials(at::Tensor x) {
  x.view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  x.view(-1)[1] = std::numeric_limits<float>::infinity();
  x.view(-1)[2] = -std::numeric_limits<float>::infinity();
  return x;
}

TEST(Levels, CompositeEqualsCpuKernelsPerTensorAndPerGroup) {
  at::manual_seed(7);
  const at::Tensor x = with_specials(at::randn({6, 4, 5}) * 2);
  const at::Tensor per_tensor = std::get<0>(mcuq::fit_levels(x, 3, "kmeans"));
  const at::Tensor per_group = std::get<0>(mcuq::fit_levels(x, 2, "quantile", 1, 2));  // 4 channels, groups of 2
  ASSERT_EQ(per_group.sizes(), (std::vector<int64_t>{2, 4}));
  for (const auto& [levels, axis, group] : {std::tuple{per_tensor, 0, 1}, std::tuple{per_group, 1, 2}}) {
    for (const auto& thresholds : {c10::optional<at::Tensor>(), c10::optional<at::Tensor>(
                                                                   (levels.narrow(-1, 0, levels.size(-1) - 1) * 0.7 +
                                                                    levels.narrow(-1, 1, levels.size(-1) - 1) * 0.3))}) {
      const at::Tensor fake = mcuq::fake_quantize_levels(x, levels, thresholds, axis, group);
      EXPECT_TRUE(at::equal(fake.nan_to_num(), composite::fake_quantize_levels(x, levels, thresholds, axis, group).nan_to_num()));
      EXPECT_TRUE(fake.view(-1)[0].isnan().item<bool>());
      const at::Tensor q = mcuq::quantize_levels(x, levels, thresholds, axis, group);
      EXPECT_EQ(q.scalar_type(), at::kByte);
      EXPECT_TRUE(at::equal(q, composite::quantize_levels(x, levels, thresholds, axis, group, c10::nullopt)));
      const at::Tensor back = mcuq::dequantize_levels(q, levels, axis, group);
      EXPECT_TRUE(at::equal(back, composite::dequantize_levels(q, levels, axis, group, c10::nullopt)));
      const at::Tensor not_nan = ~x.isnan();
      EXPECT_TRUE(at::equal(back.masked_select(not_nan), fake.masked_select(not_nan)));
      const at::Tensor grad = at::randn(x.sizes());
      auto [gi, gl] = mcuq::detail::fake_quantize_levels_backward(grad, x, levels, thresholds, axis, group, true);
      auto [ci, cl] = composite::fake_quantize_levels_backward(grad, x, levels, thresholds, axis, group, true);
      EXPECT_TRUE(at::equal(gi, ci));
      EXPECT_TRUE(at::allclose(gl, cl, 1e-6, 1e-6));
    }
  }
}

TEST(Levels, UniformCodebookEqualsFakeQuantizeBitForBit) {
  at::manual_seed(3);
  const at::Tensor scale = at::rand({5}) * 0.1 + 0.01;
  const at::Tensor zero_point = at::randint(-20, 20, {5}, at::kInt);
  auto [levels, thresholds] = mcuq::uniform_levels(scale, zero_point, -128, 127);
  at::Tensor x = at::randn({5, 300}) * 8;
  // Values on and next to every decision boundary of channel 0.
  x[0] = ((at::arange(300, at::kFloat) - 150 + 0.5) - zero_point[0].item<int>()) * scale[0];
  EXPECT_TRUE(at::equal(mcuq::fake_quantize_levels(x, levels, thresholds, 0),
                        mcuq::fake_quantize(x, scale, zero_point, -128, 127, 0)));
  EXPECT_TRUE(at::equal(composite::fake_quantize_levels(x, levels, thresholds, 0, 1),
                        mcuq::fake_quantize(x, scale, zero_point, -128, 127, 0)));
}

TEST(Levels, LevelsLearnFromTheGradientsOfTheValuesTheyTake) {
  const at::Tensor x = at::tensor({-1.0f, -0.2f, 0.1f, 0.4f, 2.0f});
  const at::Tensor levels = at::tensor({-0.5f, 0.0f, 0.5f}).requires_grad_(true);
  const at::Tensor y = mcuq::fake_quantize_levels(x, levels);
  EXPECT_TRUE(at::equal(y.detach(), at::tensor({-0.5f, 0.0f, 0.0f, 0.5f, 0.5f})));
  (y * at::tensor({1.0f, 2.0f, 3.0f, 4.0f, 5.0f})).sum().backward();
  EXPECT_TRUE(at::equal(levels.grad(), at::tensor({1.0f, 5.0f, 9.0f})));
}

}  // namespace
