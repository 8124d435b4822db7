// The launch scheme of mcuq's elementwise CUDA kernels: a grid-stride loop
// over the elements of dense tensors in memory order, kVec consecutive
// elements per step (16-byte loads where every pointer allows), and the
// scale and zero point of each element: loaded once per thread for a whole
// tensor, per packet (kSame) or per element otherwise.
#pragma once

#include "mcuq/ops/cuda/packet_qparams.h"

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

// The parameters in device memory, one entry per channel (groups expanded),
// or one for the whole tensor.
struct QParamsView {
  const QEntry* entry = nullptr;
  const int64_t* zero_point = nullptr;
  bool per_tensor = true;
};

// The parameters of each element of a packet.
template <int kVec>
struct PacketQParams {
  QEntry entry[kVec];
  int64_t zero_point[kVec];
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

// The grid-stride loop with each packet's parameters: body(i, count, p).
template <int kVec, typename Body>
__global__ void with_qparams_kernel(int64_t n, QParamsView q, ChannelOf channel, Body body) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x * kVec;
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * kVec;
  PacketQParams<kVec> p;
  if (q.per_tensor) {
    const QEntry e = q.entry[0];
    const int64_t z = q.zero_point[0];
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      p.entry[k] = e;
      p.zero_point[k] = z;
    }
    for (; i < n; i += step) body(i, static_cast<int>(n - i < kVec ? n - i : kVec), p);
    return;
  }
  const ChannelStep walk = channel_step(channel.stride, kVec);
  for (; i < n; i += step) {
    int64_t c = channel(i);
    if (walk == ChannelStep::kSame) {  // one load for the packet
      const QEntry e = q.entry[c];
      const int64_t z = q.zero_point[c];
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        p.entry[k] = e;
        p.zero_point[k] = z;
      }
    } else {
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        // Past the end (a tail packet), the last element's channel: every
        // load stays in the table, every division within the divider's range.
        const int64_t j = i + k < n ? i + k : n - 1;
        if (k > 0) c = next_channel(walk, c, channel.channels, [&] { return channel(j); });
        p.entry[k] = q.entry[c];
        p.zero_point[k] = q.zero_point[c];
      }
    }
    body(i, static_cast<int>(n - i < kVec ? n - i : kVec), p);
  }
}

template <int kVec, typename Body>
void launch_with_qparams(int64_t n, const QParamsView& q, const ChannelOf& channel, const Body& body) {
  if (n == 0) return;
  const int64_t steps = (n + kVec - 1) / kVec;
  with_qparams_kernel<kVec><<<blocks_for(steps), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      n, q, channel, body);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace mcuq::ops::cuda
