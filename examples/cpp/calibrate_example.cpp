// Post-training calibration from C++, without Python: load a TorchScript
// model with mcuq observers inside, run calibration batches through it, and
// print each observer's range and quantization parameters.
//
//   calibrate_example MODEL.pt [BATCHES]
#include <mcuq/mcuq.h>

#include <ATen/ATen.h>
#include <torch/script.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.pt [BATCHES]\n", argv[0]);
    return 2;
  }
  const int batches = argc > 2 ? std::stoi(argv[2]) : 8;
  torch::jit::Module model = torch::jit::load(argv[1]);
  model.eval();

  // The input width of the model's first linear layer, to make batches for it.
  const int64_t features = model.attr("linear").toModule().attr("weight").toTensor().size(1);
  at::manual_seed(0);
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < batches; ++i) {
      model.forward({at::randn({64, features})});
    }
  }

  std::printf("calibrated %s with %d batches\n", argv[1], batches);
  for (const auto& child : model.named_modules()) {
    torch::jit::Module observer = child.value;
    if (!observer.find_method("calculate_qparams")) continue;
    const auto qparams = observer.run_method("calculate_qparams").toTuple();
    const at::Tensor scale = qparams->elements()[0].toTensor();
    const at::Tensor zero_point = qparams->elements()[1].toTensor();
    std::printf(
        "  %-16s min %9.4f  max %9.4f  scale[0] %.6g  zero_point[0] %d  (%lld range(s))\n",
        child.name.c_str(), observer.attr("min_val").toTensor().min().item<float>(),
        observer.attr("max_val").toTensor().max().item<float>(), scale[0].item<float>(),
        zero_point[0].item<int>(), static_cast<long long>(scale.numel()));
  }
  return 0;
}
