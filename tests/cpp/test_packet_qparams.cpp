// The CUDA kernels' walk over the channels of a packet (cuda/packet_qparams.h),
// run here on the host: no GPU is needed to check the index arithmetic that
// picks each element's scale and zero point. Oracle: (i / stride) % channels.
#include "mcuq/ops/cuda/packet_qparams.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace {

using mcuq::ops::cuda::channel_step;
using mcuq::ops::cuda::ChannelStep;
using mcuq::ops::cuda::next_channel;

// Every packet of `vec` elements of a tensor of n elements, as the kernel
// walks them: the first element's channel by division, the rest by the step.
// Elements past the end (a tail packet) must still get a channel in range.
void expect_walk_matches_division(int64_t n, int64_t stride, int64_t channels, int vec) {
  const ChannelStep step = channel_step(stride, vec);
  const auto channel = [&](int64_t j) { return (j / stride) % channels; };
  for (int64_t i = 0; i < n; i += vec) {
    int64_t c = channel(i);
    for (int k = 1; k < vec; ++k) {
      c = next_channel(step, c, channels, [&] { return channel(i + k); });
      if (i + k < n) {
        ASSERT_EQ(c, channel(i + k)) << "n " << n << " stride " << stride << " channels " << channels << " vec "
                                     << vec << " element " << i + k;
      }
      ASSERT_GE(c, 0);
      ASSERT_LT(c, channels);
    }
  }
}

TEST(PacketQParams, ChannelWalkMatchesDivisionForEveryLayout) {
  for (int vec : {1, 2, 4, 8, 16}) {
    for (int64_t stride : {1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 49, 64}) {
      for (int64_t channels : {1, 2, 3, 4, 5, 7, 8, 9, 16, 33}) {
        for (int64_t outer : {1, 2, 3}) {
          const int64_t n = stride * channels * outer;
          expect_walk_matches_division(n, stride, channels, vec);
          expect_walk_matches_division(n - 1, stride, channels, vec);  // a partial last packet
        }
      }
    }
  }
}

TEST(PacketQParams, StepIsTheCheapestThatHolds) {
  EXPECT_EQ(channel_step(4096, 4), ChannelStep::kSame);  // axis 0 of a [C, 4096] weight
  EXPECT_EQ(channel_step(196, 4), ChannelStep::kSame);   // NCHW, 14 x 14
  EXPECT_EQ(channel_step(1, 4), ChannelStep::kNext);     // channels last
  EXPECT_EQ(channel_step(49, 4), ChannelStep::kDivide);  // NCHW, 7 x 7
  EXPECT_EQ(channel_step(49, 1), ChannelStep::kSame);    // one element per packet
}

}  // namespace
