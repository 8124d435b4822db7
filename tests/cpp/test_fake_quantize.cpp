// The C++ API against ATen's own fake-quant ops, and autograd through it.
#include <mcuq/mcuq.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace {

// Values on both sides of the range, exact ties and zero, for scale 0.05.
at::Tensor sample_input(at::IntArrayRef shape, int64_t seed = 0) {
  at::manual_seed(seed);
  at::Tensor x = at::randn(shape) * 4.0;
  at::Tensor flat = x.view({-1});
  flat.index_put_({0}, 0.025);   // x / s = 0.5: a tie, to even (0)
  flat.index_put_({1}, -0.075);  // -1.5: to even (-2)
  flat.index_put_({2}, 0.0);
  flat.index_put_({3}, 1e6);     // far beyond the range
  flat.index_put_({4}, -std::numeric_limits<float>::infinity());
  return x;
}

template <typename F>
std::string error_message(F f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

TEST(FakeQuantize, MatchesATenPerTensorBitForBit) {
  const at::Tensor x = sample_input({8, 64});
  for (auto [qmin, qmax, z] : {std::tuple{-128, 127, 0}, {0, 255, 37}, {-8, 7, -3}, {-32768, 32767, 5}}) {
    const at::Tensor ours =
        mcuq::fake_quantize(x, at::full({1}, 0.05), at::full({1}, z, at::kInt), qmin, qmax);
    const at::Tensor aten = at::fake_quantize_per_tensor_affine(x, 0.05, z, qmin, qmax);
    EXPECT_TRUE(ours.equal(aten)) << "range [" << qmin << ", " << qmax << "], z=" << z;
  }
}

TEST(FakeQuantize, MatchesATenPerChannelBitForBit) {
  const at::Tensor x = sample_input({2, 6, 5, 3}, 1);
  const at::Tensor scale = at::linspace(0.01, 0.2, 6);
  const at::Tensor zero_point = at::arange(-3, 3, at::kInt);
  for (int64_t axis : {1, -3}) {
    const at::Tensor ours = mcuq::fake_quantize(x, scale, zero_point, -128, 127, axis);
    const at::Tensor aten = at::fake_quantize_per_channel_affine(x, scale, zero_point, 1, -128, 127);
    EXPECT_TRUE(ours.equal(aten)) << "axis " << axis;
  }
}

TEST(FakeQuantize, PerGroupSharesOneScaleAcrossConsecutiveChannels) {
  const at::Tensor x = sample_input({12, 7}, 2);
  const at::Tensor scale = at::tensor({0.02, 0.1, 0.3}, at::kFloat);
  const at::Tensor zero_point = at::tensor({0, 4, -2}, at::kInt);
  const at::Tensor ours = mcuq::fake_quantize(x, scale, zero_point, -8, 7, 0, /*group_size=*/4);
  const at::Tensor per_channel = at::fake_quantize_per_channel_affine(
      x, scale.repeat_interleave(4), zero_point.repeat_interleave(4), 0, -8, 7);
  EXPECT_TRUE(ours.equal(per_channel));
}

TEST(FakeQuantize, GradientIsMaskedStraightThrough) {
  const at::Tensor x = sample_input({4, 33}, 3).requires_grad_();
  mcuq::fake_quantize(x, at::full({1}, 0.05), at::zeros({1}, at::kInt), -128, 127).sum().backward();
  const at::Tensor x_ref = x.detach().clone().requires_grad_();
  at::fake_quantize_per_tensor_affine(x_ref, 0.05, 0, -128, 127).sum().backward();
  EXPECT_TRUE(x.grad().equal(x_ref.grad()));
  EXPECT_GT(x.grad().sum().item<double>(), 0.0);
  EXPECT_LT(x.grad().sum().item<double>(), x.numel());
}

TEST(FakeQuantize, LsqScaleGradientFollowsEsserEtAl) {
  // s = 0.5, z = 0, range [-2, 1]: x = 0.2 is inside (q = 0, grad q - x/s = -0.4),
  // x = 3 clamps high (grad qmax - z = 1), x = -5 clamps low (grad qmin - z = -2).
  const at::Tensor x = at::tensor({0.2, 3.0, -5.0}, at::kDouble);
  const at::Tensor scale = at::full({1}, 0.5, at::kDouble).requires_grad_();
  const at::Tensor zero_point = at::zeros({1}, at::kDouble).requires_grad_();
  mcuq::fake_quantize(x, scale, zero_point, -2, 1).sum().backward();
  EXPECT_NEAR(scale.grad().item<double>(), -0.4 + 1.0 - 2.0, 1e-12);
  EXPECT_NEAR(zero_point.grad().item<double>(), -0.5 * 2, 1e-12);  // -s per clamped element
}

TEST(FakeQuantize, DoubleBackwardFailsClearly) {
  const at::Tensor x = at::randn({5}, at::kDouble).requires_grad_();
  const at::Tensor scale = at::full({1}, 0.1, at::kDouble).requires_grad_();
  const at::Tensor y = mcuq::fake_quantize(x, scale, at::zeros({1}, at::kInt), -128, 127);
  y.sum().backward({}, /*retain_graph=*/true, /*create_graph=*/true);
  ASSERT_TRUE(scale.grad().requires_grad());
  const std::string message = error_message([&] { scale.grad().backward(); });
  EXPECT_NE(message.find("double backward is not supported"), std::string::npos) << message;
}

TEST(FakeQuantize, BadScaleIsValueErrorNamingOpArgumentAndValue) {
  const at::Tensor x = at::randn({3});
  EXPECT_THROW(
      mcuq::fake_quantize(x, at::full({1}, -0.5), at::zeros({1}, at::kInt), -128, 127),
      c10::ValueError);
  const std::string message = error_message(
      [&] { mcuq::fake_quantize(x, at::full({1}, -0.5), at::zeros({1}, at::kInt), -128, 127); });
  EXPECT_NE(message.find("mcuq::fake_quantize: expected scale"), std::string::npos) << message;
  EXPECT_NE(message.find("-0.5"), std::string::npos) << message;
}

TEST(FakeQuantize, IntegerInputIsTypeError) {
  EXPECT_THROW(
      mcuq::fake_quantize(at::ones({3}, at::kInt), at::ones({1}), at::zeros({1}), -128, 127),
      c10::TypeError);
}

TEST(FakeQuantize, MetaKernelGivesShapeWithoutData) {
  const auto meta = at::TensorOptions().device(at::kMeta);
  const at::Tensor y = mcuq::fake_quantize(
      at::empty({2, 3, 4}, meta), at::empty({3}, meta), at::empty({3}, meta.dtype(at::kInt)), 0,
      255, 1);
  EXPECT_TRUE(y.is_meta());
  EXPECT_EQ(y.sizes(), (at::IntArrayRef{2, 3, 4}));
  const at::Tensor q = mcuq::quantize(
      at::empty({2, 3}, meta), at::empty({1}, meta), at::empty({1}, meta.dtype(at::kInt)), 0, 255);
  EXPECT_EQ(q.scalar_type(), at::kByte);
}

TEST(Quantize, DequantizeOfQuantizeIsFakeQuantize) {
  const at::Tensor x = sample_input({6, 10}, 4);
  const at::Tensor scale = at::linspace(0.01, 0.1, 6);
  const at::Tensor zero_point = at::arange(0, 6, at::kInt);
  const at::Tensor q = mcuq::quantize(x, scale, zero_point, -128, 127);
  EXPECT_EQ(q.scalar_type(), at::kChar);
  EXPECT_TRUE(mcuq::dequantize(q, scale, zero_point, -128, 127)
                  .equal(mcuq::fake_quantize(x, scale, zero_point, -128, 127)));
}

}  // namespace
