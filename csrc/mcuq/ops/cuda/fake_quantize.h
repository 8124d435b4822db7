// fake_quantize on CUDA tensors for a caller that already holds the scale and
// zero point on the host (the fused observer, which has just computed them
// and copied them to the GPU): they are checked there, with no read-back.
// `scale` / `zero_point` must hold the same values on the input's device:
// the kernels read those.
#pragma once

#include <ATen/core/Tensor.h>

namespace mcuq::ops::cuda {

at::Tensor fake_quantize_with_host_qparams(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    const at::Tensor& scale_host,
    const at::Tensor& zero_point_host,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size);

}  // namespace mcuq::ops::cuda
