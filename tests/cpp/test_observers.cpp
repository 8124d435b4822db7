// Observers from C++: the C++ classes against PyTorch's own observer rules,
// and a TorchScript model with mcuq observers, saved by Python, that keeps
// observing after loading in C++.
#include <mcuq/mcuq.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

namespace {

TEST(Observers, RunningMinMaxAndQParamsFollowTorchAo) {
  mcuq::MinMaxObserver observer;  // uint8 affine, like torch.ao's default
  observer(at::tensor({-1.0f, 0.5f, 2.0f}));
  observer(at::tensor({0.25f, 3.0f}));
  EXPECT_EQ(observer.min_val().item<float>(), -1.0f);
  EXPECT_EQ(observer.max_val().item<float>(), 3.0f);
  auto [scale, zero_point] = observer.calculate_qparams();
  const float expected_scale = 4.0f / 255.0f;  // (max - min) / (qmax - qmin) in float32
  EXPECT_EQ(scale.item<float>(), expected_scale);
  EXPECT_EQ(zero_point.item<int>(), static_cast<int>(-std::nearbyint(-1.0f / expected_scale)));
}

TEST(Observers, SkipsAndCountsNonFiniteValues) {
  mcuq::MinMaxObserver observer;
  const float inf = std::numeric_limits<float>::infinity();
  observer(at::tensor({1.0f, inf, std::nanf(""), -inf, -2.0f}));
  EXPECT_EQ(observer.min_val().item<float>(), -2.0f);
  EXPECT_EQ(observer.max_val().item<float>(), 1.0f);
  EXPECT_EQ(observer.nonfinite_count().item<int64_t>(), 3);
}

TEST(Observers, NoFiniteValueIsAValueError) {
  mcuq::MinMaxObserver observer;
  observer(at::full({4}, std::nanf("")));
  EXPECT_THROW(observer.calculate_qparams(), c10::ValueError);
}

TEST(Observers, PerChannelEmaFakeQuantizePassesGradientStraightThrough) {
  mcuq::ObserverOptions options;
  options.quant_min = -127;
  options.quant_max = 127;
  options.symmetric = true;
  options.axis = 1;
  mcuq::FakeQuantize fake_quantize(options);
  const at::Tensor x = at::randn({2, 3, 4}).requires_grad_();
  const at::Tensor y = fake_quantize(x);
  ASSERT_EQ(fake_quantize.scale().numel(), 3);
  // First batch: the state is this batch's per-channel absolute maximum / 127.
  const at::Tensor amax = x.detach().abs().amax({0, 2});
  EXPECT_TRUE(fake_quantize.scale().equal(amax / 127.0f));
  y.sum().backward();
  EXPECT_TRUE(x.grad().equal(at::ones_like(x)));  // nothing clamps at the batch's own range
}

// data/observer_module.pt is written by data/make_observer_module.py.
TEST(TorchScript, ObserverModuleSavedByPythonKeepsObservingInCpp) {
  torch::jit::Module model = torch::jit::load(MCUQ_TEST_DATA_DIR "/observer_module.pt");
  torch::jit::Module input_observer = model.attr("input_observer").toModule();
  torch::jit::Module output_observer = model.attr("output_observer").toModule();
  const float old_min = input_observer.attr("min_val").toTensor().item<float>();
  const float old_output_max = output_observer.attr("max_val").toTensor().item<float>();
  ASSERT_LT(old_min, 0.0f);  // Python already calibrated one batch

  const at::Tensor batch = at::randn({32, 8}) * 5.0;
  const at::Tensor out = model.forward({batch}).toTensor();
  const at::Tensor in_min = input_observer.attr("min_val").toTensor();
  EXPECT_EQ(in_min.item<float>(), std::min(old_min, batch.min().item<float>()));
  // EMA with constant 0.5, PyTorch's float32 rule.
  const float batch_max = out.max().item<float>();
  const float expected_max = old_output_max + 0.5f * (batch_max - old_output_max);
  EXPECT_EQ(output_observer.attr("max_val").toTensor().item<float>(), expected_max);

  const auto qparams = output_observer.run_method("calculate_qparams").toTuple();
  auto [scale, zero_point] = mcuq::choose_qparams(
      output_observer.attr("min_val").toTensor(), output_observer.attr("max_val").toTensor(), 0,
      255, false);
  EXPECT_TRUE(qparams->elements()[0].toTensor().equal(scale));
  EXPECT_TRUE(qparams->elements()[1].toTensor().equal(zero_point));
}

}  // namespace

namespace {

TEST(Observers, HistogramThroughTheCppApiPicksARangeInsideTheData) {
  const at::Tensor histogram = at::zeros({256}, at::kLong);
  const at::Tensor range = at::zeros({2}, at::kDouble);
  const at::Tensor min_val = at::full({1}, std::numeric_limits<float>::infinity());
  const at::Tensor max_val = at::full({1}, -std::numeric_limits<float>::infinity());
  const at::Tensor count = at::zeros({1}, at::kLong);
  at::manual_seed(0);
  const at::Tensor x = at::randn({100000});
  mcuq::observe_histogram_(x, histogram, range, min_val, max_val, count);
  EXPECT_EQ(histogram.sum().item<int64_t>(), x.numel());
  auto [lo, hi] = mcuq::histogram_range(histogram, range, min_val, max_val, 0, 255, false, "percentile", 99.0);
  // The 1% and 99% quantiles of a standard normal are -/+2.326.
  EXPECT_NEAR(lo.item<float>(), -2.326f, 0.05f);
  EXPECT_NEAR(hi.item<float>(), 2.326f, 0.05f);
}

}  // namespace

namespace {

TEST(Observers, BadGroupingIsAValueErrorNotACrash) {
  mcuq::ObserverOptions options;
  options.axis = 0;
  options.group_size = 0;
  mcuq::MinMaxObserver zero_groups(options);
  EXPECT_THROW(zero_groups(at::randn({6, 3})), c10::ValueError);
  options.group_size = 4;  // does not divide 6 channels
  mcuq::FakeQuantize uneven(options);
  EXPECT_THROW(uneven(at::randn({6, 3})), c10::ValueError);
}

}  // namespace
