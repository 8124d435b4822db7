// The launch scheme of mcuq's elementwise CUDA kernels: a grid-stride loop
// over the elements of dense tensors in memory order, kVec consecutive
// elements per step (16-byte loads where every pointer allows), and the
// channel of each element for per-channel parameters.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <cstdint>

namespace mcuq::ops::cuda {

// The channel of the element at memory offset i of a dense (non-overlapping)
// tensor: (i / stride(axis)) % size(axis), whatever the order of its
// dimensions in memory (contiguous, channels-last, ...). Per-tensor
// parameters: stride = numel, channels = 1.
struct ChannelOf {
  at::cuda::detail::IntDivider<uint32_t> stride32{1}, channels32{1};
  int64_t stride = 1, channels = 1;
  bool wide = false;  // offsets beyond int32: plain 64-bit division

  ChannelOf(int64_t numel, int64_t stride_, int64_t channels_)
      : stride(std::max<int64_t>(stride_, 1)), channels(std::max<int64_t>(channels_, 1)) {
    wide = numel > static_cast<int64_t>(INT32_MAX);
    if (!wide) {
      stride32 = at::cuda::detail::IntDivider<uint32_t>(static_cast<uint32_t>(stride));
      channels32 = at::cuda::detail::IntDivider<uint32_t>(static_cast<uint32_t>(channels));
    }
  }
  __device__ inline int64_t operator()(int64_t i) const {
    if (wide) return (i / stride) % channels;
    return channels32.mod(stride32.div(static_cast<uint32_t>(i)));
  }
};

// Per-channel parameters, one entry per channel (groups expanded), in device
// memory; or, per tensor, the one entry by value (no memory read).
struct QParamsView {
  const int64_t* zero_point = nullptr;
  const float* scale = nullptr;
  const float* inv_scale = nullptr;
  int64_t zero_point0 = 0;
  float scale0 = 1.0f, inv_scale0 = 1.0f;
  bool per_tensor = true;

  __device__ inline int64_t z(int64_t c) const { return per_tensor ? zero_point0 : zero_point[c]; }
  __device__ inline float s(int64_t c) const { return per_tensor ? scale0 : scale[c]; }
  __device__ inline float inv(int64_t c) const { return per_tensor ? inv_scale0 : inv_scale[c]; }
};

template <typename T, int N>
struct alignas(sizeof(T) * N) Packet {
  T v[N];
};

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

constexpr int kThreads = 256;

// Enough blocks to fill the GPU several times over; the loop covers the rest.
inline int blocks_for(int64_t steps) {
  const int64_t per_sm = 2048 / kThreads * 4;
  const int64_t cap = static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * per_sm;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((steps + kThreads - 1) / kThreads, cap)));
}

// Runs f(i) for i in [0, n), grouped so that a thread handles kVec
// consecutive elements per step: f must take (first, count) and handle
// count == kVec with packet loads, fewer at the tail.
template <int kVec, typename F>
__global__ void grid_stride_kernel(int64_t n, F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x * kVec;
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * kVec; i < n; i += step) {
    f(i, static_cast<int>(n - i < kVec ? n - i : kVec));
  }
}

template <int kVec, typename F>
void launch(int64_t n, const F& f) {
  if (n == 0) return;
  const int64_t steps = (n + kVec - 1) / kVec;
  grid_stride_kernel<kVec><<<blocks_for(steps), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(n, f);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace mcuq::ops::cuda
