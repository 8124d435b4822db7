// How the CUDA kernels find the scale and zero point of each element: the
// entry they load per channel, and how the channel moves from one element of
// a packet (kVec consecutive elements in memory) to the next. No CUDA
// headers, so the host tests check the walk (tests/cpp/test_packet_qparams.cpp).
#pragma once

#include "mcuq/ops/host_device.h"

#include <cstdint>

namespace mcuq::ops::cuda {

// One channel's parameters as the fast path reads them, in one 16-byte load:
// the float32 scale, its reciprocal and the zero point as a float32 (an
// integer in the range, exact below 2^24). The exact path also reads the
// int64 zero point, kept beside these.
struct alignas(16) QEntry {
  float scale;
  float inv_scale;
  float zero_point;
  float unused;
};

// The channel of element i is (i / stride) % channels. Within a packet that
// starts at a multiple of `vec`:
// - kSame: stride is a multiple of vec, so no channel boundary falls inside
//   (axis 0 of a contiguous weight, NCHW activations with H * W % vec == 0);
// - kNext: stride 1, so each element is the next channel, wrapping
//   (channels-last activations, the last axis);
// - kDivide: anything else, one division per element.
enum class ChannelStep : uint8_t { kSame, kNext, kDivide };

MCUQ_HOST_DEVICE inline ChannelStep channel_step(int64_t stride, int vec) {
  if (stride % vec == 0) return ChannelStep::kSame;
  if (stride == 1) return ChannelStep::kNext;
  return ChannelStep::kDivide;
}

// The channel of the element after one in channel c; `divide()` computes it
// from scratch where the step says so.
template <typename Divide>
MCUQ_HOST_DEVICE inline int64_t next_channel(ChannelStep step, int64_t c, int64_t channels, const Divide& divide) {
  if (step == ChannelStep::kSame) return c;
  if (step == ChannelStep::kNext) return c + 1 == channels ? 0 : c + 1;
  return divide();
}

}  // namespace mcuq::ops::cuda
