// TorchScript modules that call mcuq ops, saved and loaded from C++.
#include <mcuq/mcuq.h>

#include <gtest/gtest.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/script.h>

#include <cstdio>
#include <string>

namespace {

// TorchScript source compiled in C++ resolves only `torch.*` by default; this
// also resolves `ops.<namespace>.<op>`, the spelling saved modules use.
struct OpNamespaces : torch::jit::SugaredValue {
  std::string kind() const override {
    return "op namespaces";
  }
  std::shared_ptr<torch::jit::SugaredValue> attr(
      const torch::jit::SourceRange& /*loc*/,
      torch::jit::GraphFunction& /*m*/,
      const std::string& field) override {
    return std::make_shared<torch::jit::BuiltinModule>(field);
  }
};

struct OpsResolver : torch::jit::NativeResolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(
      const std::string& name,
      torch::jit::GraphFunction& m,
      const torch::jit::SourceRange& loc) override {
    if (name == "ops") {
      return std::make_shared<OpNamespaces>();
    }
    return NativeResolver::resolveValue(name, m, loc);
  }
};

// data/fake_quantize_module.pt is written by data/make_fake_quantize_module.py
// (Python, torch.jit.script); it holds its own input and expected output.
TEST(TorchScript, LoadsModuleSavedByPythonAndReproducesItsOutput) {
  torch::jit::Module module = torch::jit::load(MCUQ_TEST_DATA_DIR "/fake_quantize_module.pt");
  const at::Tensor input = module.attr("example_input").toTensor();
  const at::Tensor expected = module.attr("expected_output").toTensor();
  const at::Tensor output = module.forward({input}).toTensor();
  EXPECT_TRUE(output.equal(expected));

  // And the graph's per-channel fake-quant equals ATen's.
  const at::Tensor scale = module.attr("scale").toTensor();
  const at::Tensor zero_point = module.attr("zero_point").toTensor();
  EXPECT_TRUE(output.equal(at::fake_quantize_per_channel_affine(input, scale, zero_point, 1, -128, 127)));
}

TEST(TorchScript, ModuleDefinedInCppSavesLoadsAndBackpropagates) {
  torch::jit::Module module("FakeQuantizeInt4");
  module.register_buffer("scale", at::full({1}, 0.1));
  module.register_buffer("zero_point", at::zeros({1}, at::kInt));
  module.define(R"(
def forward(self, x):
    return ops.mcuq.fake_quantize(x, self.scale, self.zero_point, -8, 7)
)",
                std::make_shared<OpsResolver>());
  const std::string path = ::testing::TempDir() + "mcuq_fake_quantize_int4.pt";
  module.save(path);
  torch::jit::Module loaded = torch::jit::load(path);
  std::remove(path.c_str());

  const at::Tensor x = at::linspace(-1.0, 1.0, 21).requires_grad_();
  const at::Tensor y = loaded.forward({x}).toTensor();
  EXPECT_TRUE(y.equal(at::fake_quantize_per_tensor_affine(x.detach(), 0.1, 0, -8, 7)));
  y.sum().backward();
  // Straight-through inside [-0.8, 0.7] (levels -8..7), zero outside.
  const at::Tensor expected_grad = ((x.detach() >= -0.85) & (x.detach() <= 0.75)).to(at::kFloat);
  EXPECT_TRUE(x.grad().equal(expected_grad)) << x.grad();
}

}  // namespace

namespace {

// data/frozen_model.pt: mcuq.prepare'd, QAT-trained, mcuq.freeze'd and
// scripted in Python (data/make_frozen_model.py); C++ must reproduce
// Python's output exactly.
TEST(TorchScript, FrozenQatModelFromPythonGivesIdenticalOutputsInCpp) {
  torch::jit::Module module = torch::jit::load(MCUQ_TEST_DATA_DIR "/frozen_model.pt");
  module.eval();
  const at::Tensor input = module.attr("example_input").toTensor();
  const at::Tensor expected = module.attr("expected_output").toTensor();
  EXPECT_TRUE(module.forward({input}).toTensor().equal(expected));
  // Frozen for good: torch.jit.freeze turns the qparams into constants and
  // the output stays the same.
  torch::jit::Module constant = torch::jit::freeze(module);
  EXPECT_TRUE(constant.forward({input}).toTensor().equal(expected));
}

}  // namespace
