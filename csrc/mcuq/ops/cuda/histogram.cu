// CUDA kernel of the histogram observer's counting pass (see histogram.h).
// Each block counts a slice of one row into shared memory, then adds its
// non-zero bins to the row in global memory.
#include "mcuq/ops/cpu/histogram_math.h"
#include "mcuq/ops/cuda/elementwise.cuh"
#include "mcuq/ops/cuda/histogram.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>

namespace mcuq::ops::cuda {
namespace detail {

// Shared counters: uint32 counts and float64 sums for up to this many bins.
constexpr int64_t kSharedBins = 2048;

template <typename scalar_t, bool kShared>
__global__ void count_kernel(
    const scalar_t* rows,
    int64_t first_row,
    int64_t n,
    const double* grid_k,
    const double* grid_inv_w,
    int64_t bins,
    unsigned long long* hist,
    double* sums) {
  __shared__ unsigned int shared_counts[kShared ? kSharedBins : 1];
  __shared__ double shared_sums[kShared ? kSharedBins : 1];
  const int64_t c = first_row + blockIdx.y;
  const double k = grid_k[c], inv_w = grid_inv_w[c];
  if (inv_w == 0.0) return;  // the whole block agrees
  unsigned long long* row_hist = hist + c * bins;
  double* row_sums = sums != nullptr ? sums + c * bins : nullptr;
  if (kShared) {
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) {
      shared_counts[b] = 0;
      shared_sums[b] = 0.0;
    }
    __syncthreads();
  }
  const scalar_t* x = rows + c * n;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(x[i]);
    if (!isfinite(v)) continue;
    const double f = to_float_range(v);
    const int64_t b = grid_bin(f, k, inv_w, bins);
    if (kShared) {
      atomicAdd(&shared_counts[b], 1u);
      if (row_sums != nullptr) atomicAdd(&shared_sums[b], f);
    } else {
      atomicAdd(&row_hist[b], 1ull);
      if (row_sums != nullptr) atomicAdd(&row_sums[b], f);
    }
  }
  if (kShared) {
    __syncthreads();
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) {
      if (shared_counts[b] != 0) {
        atomicAdd(&row_hist[b], static_cast<unsigned long long>(shared_counts[b]));
        if (row_sums != nullptr) atomicAdd(&row_sums[b], shared_sums[b]);
      }
    }
  }
}

}  // namespace detail

void count_histogram(
    const at::Tensor& rows,
    const at::Tensor& grid_k,
    const at::Tensor& grid_inv_w,
    const at::Tensor& histogram,
    const at::Tensor& sums) {
  const c10::cuda::CUDAGuard guard(rows.device());
  const int64_t channels = rows.size(0), n = rows.size(1), bins = histogram.size(-1);
  if (channels == 0 || n == 0) return;
  // Enough blocks per row to fill the GPU, each with a good slice of the row.
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t per_row = std::max<int64_t>(1, std::min<int64_t>((n + 4 * kThreads - 1) / (4 * kThreads),
                                                                 (sms * 8 + channels - 1) / channels));
  auto* hist = reinterpret_cast<unsigned long long*>(histogram.data_ptr<int64_t>());
  double* sum = sums.defined() ? sums.data_ptr<double>() : nullptr;
  const bool shared = bins <= detail::kSharedBins;
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "mcuq::observe_histogram_", [&] {
    const auto kernel = shared ? detail::count_kernel<scalar_t, true> : detail::count_kernel<scalar_t, false>;
    for (int64_t first = 0; first < channels; first += 65535) {  // gridDim.y's limit
      const dim3 grid(static_cast<unsigned>(per_row), static_cast<unsigned>(std::min<int64_t>(channels - first, 65535)));
      kernel<<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          rows.data_ptr<scalar_t>(), first, n, grid_k.data_ptr<double>(), grid_inv_w.data_ptr<double>(), bins, hist, sum);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

}  // namespace mcuq::ops::cuda
