// The GPU half of observe_histogram_ on CUDA tensors. The host half
// (cpu/histogram.cpp) folds each row's batch range into the state and picks
// its canonical grid, as for CPU tensors; this counts the values.
#pragma once

#include <ATen/core/Tensor.h>

namespace mcuq::ops::cuda {

// Adds rows[c, :] (float32 or float64 on the GPU; non-finite values skipped)
// into histogram[c, :] (int64, contiguous) and, if defined, their float32-range
// values into sums[c, :] (float64, contiguous). Row c's bins are those of
// grid_bin() with grid_k[c], grid_inv_w[c] (float64, on the GPU);
// grid_inv_w[c] == 0 skips the row. Counts are exact; sums are float64
// additions in an order that varies from run to run.
void count_histogram(
    const at::Tensor& rows,
    const at::Tensor& grid_k,
    const at::Tensor& grid_inv_w,
    const at::Tensor& histogram,
    const at::Tensor& sums);

}  // namespace mcuq::ops::cuda
