// Quantization-aware training entirely in C++: load a TorchScript model that
// mcuq.prepare prepared (fake-quantizers and Conv+BN QAT blocks inside),
// calibrate it, fine-tune it with gradients flowing through mcuq's C++
// autograd, freeze it (observers off, BatchNorm statistics frozen) and save it.
//
//   qat_example MODEL.pt OUT.pt [STEPS]
// MODEL.pt carries its data as buffers `images` (uint8 [N, 28, 28]) and
// `labels` (see tests/cpp/data/make_qat_model.py). Exits non-zero if the
// loss did not fall or a quantizer ended with invalid qparams.
#include <mcuq/mcuq.h>

#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/script.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

// Runs `method` on every submodule that has it (e.g. "disable_observer").
int run_on_all(torch::jit::Module& model, const std::string& method) {
  int count = 0;
  for (auto child : model.modules()) {
    if (child.find_method(method)) {
      child.run_method(method);
      ++count;
    }
  }
  return count;
}

// Every fake-quantizer's scale is finite and positive, its zero point in range.
bool qparams_valid(torch::jit::Module& model) {
  bool ok = true;
  int checked = 0;
  for (const auto& child : model.named_modules()) {
    if (!child.value.hasattr("zero_point") || !child.value.hasattr("quant_min")) continue;
    const at::Tensor scale = child.value.attr("scale").toTensor();
    const at::Tensor zero_point = child.value.attr("zero_point").toTensor();
    const int64_t qmin = child.value.attr("quant_min").toInt();
    const int64_t qmax = child.value.attr("quant_max").toInt();
    const bool valid = at::isfinite(scale).all().item<bool>() && (scale > 0).all().item<bool>() &&
        (zero_point >= qmin).all().item<bool>() && (zero_point <= qmax).all().item<bool>();
    std::printf("  %-40s scale[0] %.6g  zero_point[0] %d  %s\n", child.name.c_str(),
                scale[0].item<float>(), zero_point[0].item<int>(), valid ? "ok" : "INVALID");
    ok = ok && valid;
    ++checked;
  }
  return ok && checked > 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.pt OUT.pt [STEPS]\n", argv[0]);
    return 2;
  }
  const int steps = argc > 3 ? std::stoi(argv[3]) : 60;
  torch::jit::Module model = torch::jit::load(argv[1]);
  const at::Tensor images = model.attr("images").toTensor().unsqueeze(1).to(at::kFloat) / 255.0;
  const at::Tensor labels = model.attr("labels").toTensor();

  std::vector<at::Tensor> parameters;
  for (const auto& p : model.parameters()) parameters.push_back(p);
  torch::optim::Adam optimizer(parameters, torch::optim::AdamOptions(3e-3));

  // Calibrate first: observe a few batches with fake quantization off, so
  // training starts from calibrated ranges. In training mode, so that the
  // (untrained) BatchNorm layers normalize as they will while training.
  run_on_all(model, "disable_fake_quant");
  {
    torch::NoGradGuard no_grad;
    model.train();
    for (int64_t start = 0; start + 64 <= images.size(0); start += 64) {
      model.forward({images.narrow(0, start, 64)});
    }
  }
  run_on_all(model, "enable_fake_quant");

  model.train();
  const int64_t batch = 32;
  double first_loss = 0.0, last_loss = 0.0;
  for (int step = 0; step < steps; ++step) {
    const int64_t start = (step * batch) % images.size(0);
    const at::Tensor x = images.narrow(0, start, batch);
    const at::Tensor y = labels.narrow(0, start, batch);
    optimizer.zero_grad();
    const at::Tensor loss = at::cross_entropy_loss(model.forward({x}).toTensor(), y);
    loss.backward();  // through mcuq's C++ autograd (straight-through)
    optimizer.step();
    // Average over one pass of the data at the start and at the end.
    const int window = static_cast<int>(images.size(0) / batch);
    if (step < window) first_loss += loss.item<double>() / window;
    if (step >= steps - window) last_loss += loss.item<double>() / window;
  }
  std::printf("QAT in C++: %d steps, mean loss %.4f -> %.4f\n", steps, first_loss, last_loss);

  // Freeze: observers off, BatchNorm statistics frozen, codebooks (non-uniform
  // weights, presets nu4 / nu3) snapped onto the int8 grid, eval mode; then save.
  const int observers = run_on_all(model, "disable_observer");
  const int batch_norms = run_on_all(model, "freeze_bn_stats");
  run_on_all(model, "snap_codebook");
  model.eval();
  model.save(argv[2]);
  std::printf("froze %d fake-quantizers and %d Conv+BN blocks; saved %s\n", observers, batch_norms, argv[2]);

  const bool valid = qparams_valid(model);
  torch::jit::Module reloaded = torch::jit::load(argv[2]);
  const at::Tensor x = images.narrow(0, 0, 8);
  const bool same = reloaded.forward({x}).toTensor().equal(model.forward({x}).toTensor());
  const double accuracy =
      model.forward({images}).toTensor().argmax(1).eq(labels).to(at::kDouble).mean().item<double>();
  std::printf("accuracy on its %lld images: %.1f %%; reloaded model identical: %s\n",
              static_cast<long long>(images.size(0)), 100.0 * accuracy, same ? "yes" : "no");
  const bool ok = last_loss < first_loss && valid && same;
  std::printf("%s\n", ok ? "loss decreased and qparams are valid" : "FAILED");
  return ok ? 0 : 1;
}
