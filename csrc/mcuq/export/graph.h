// The integer graph: what the exporter lowers a frozen TorchScript model to,
// and what both executable forms run (the LibTorch integer reference and the
// generated C). Plain data, no torch: the C emitter compiles without it.
#pragma once

#include "mcuq_arith.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mcuq::exporter {

enum class ActivationType { kInt8, kInt16 };

// An activation tensor of one sample (the batch dimension is not stored).
struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // e.g. {C, H, W} or {F}
  float scale = 1.0f;
  int32_t zero_point = 0;
  int32_t quant_min = -128;
  int32_t quant_max = 127;
  int buffer = -1;  // storage: tensors related by reshape share one buffer

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

enum class LayerKind {
  kConv2d,
  kDepthwiseConv2d,
  kConvTranspose2d,
  kFullyConnected,
  kMaxPool2d,
  kAvgPool2d,
  kAdd,
  kSub,
  kMul,
  kConcat,
  kRequantize,
  kLut,
  kSoftmax,
  kPad,
  kUpsample,
  kReshape,
};

const char* layer_kind_name(LayerKind kind);

// Output scaling: per output channel (or one) multiplier and shift.
struct Requant {
  std::vector<int32_t> multiplier;
  std::vector<int8_t> shift;
  mcuq_rounding rounding = MCUQ_ROUND_DOUBLE;
  int32_t zero_point = 0;
  int32_t act_min = -128;
  int32_t act_max = 127;
};

struct Layer {
  LayerKind kind = LayerKind::kReshape;
  std::string name;    // module path (traced scope) or value name
  std::string source;  // TorchScript op and source line it came from
  std::vector<int> inputs;  // tensor ids
  int output = -1;

  // Conv / depthwise / fully connected.
  int32_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int32_t groups = 1, k_h = 1, k_w = 1;
  std::vector<int8_t> weights;       // levels, PyTorch layout ([out][in/groups][kh][kw] or [out][in])
  int32_t weight_bits = 8;           // 4: the C tables pack two weights per byte (W4A8)
  // Codebook weights (non-uniform): when not empty, the C tables store each
  // weight as a weight_bits-wide index into its row of `codebook` (int8
  // levels, 2^weight_bits per row, one row per codebook_channels output
  // channels); `weights` holds the decoded levels all the same.
  std::vector<int8_t> codebook;
  int32_t codebook_channels = 1;
  int32_t codebook_levels = 0;       // distinct levels per row the model uses (<= 2^weight_bits)
  std::vector<int64_t> bias;         // q_bias with the input zero point folded in
  std::vector<int64_t> bias_raw;     // q_bias before folding (the reference uses it)
  std::vector<float> weight_scale;   // per output channel
  Requant requant;

  // Pooling.
  int32_t count_include_pad = 1;
  int32_t ceil_mode = 0;
  // {channels, H, W} as the pooling kernel reads the input; empty: the
  // input's own shape. A mean or max over channels pools one [C, H * W]
  // plane with a C x 1 window.
  std::vector<int64_t> pool_view;

  // Pad: pad_h rows above, pad_bottom below, pad_w columns left, pad_right
  // right, filled with the zero point. Upsample: nearest, integer factors.
  int32_t pad_bottom = 0, pad_right = 0;
  int32_t factor_h = 1, factor_w = 1;

  // Add and sub: TFLite's scheme (left shift, input multipliers, then output
  // requant). Mul: requant alone; its second input may hold one value per
  // channel (shape [C, 1, 1]), broadcast over H and W.
  int32_t left_shift = 0;
  int32_t a_multiplier = 0, a_shift = 0, b_multiplier = 0, b_shift = 0;

  // Concat: one requantization per input into its slice of the output.
  std::vector<Requant> pieces;

  // Lookup table. int8 layers: 256 entries, index q + 128. int16 layers:
  // 513 entries sampled every 2^lut_step_shift levels from lut_start,
  // flat outside, interpolated linearly (mcuq_lut_s16); lut_error_levels is
  // its largest difference from the exact function over every int16 input.
  std::vector<int16_t> table;
  int32_t lut_start = -32768, lut_step_shift = 7;
  int64_t lut_error_levels = 0;

  // Softmax (int8): round(2^15 exp(-s_in d)) for d = max(row) - x in [0, 255].
  std::vector<int32_t> exp_table;

  // Figures for the report.
  int64_t macs = 0;
  int64_t accumulator_bound = 0;  // max |accumulator| over all inputs (conv/fc)
  double headroom_bits = 0.0;     // log2(limit / bound)
  double sqnr_db = 0.0;           // integer output vs the float model, sample inputs
  bool has_sqnr = false;
};

struct Graph {
  std::vector<TensorInfo> tensors;
  std::vector<Layer> layers;
  int input = -1;
  int output = -1;
  ActivationType activation_type = ActivationType::kInt8;
  int64_t batch = 1;  // batch of the traced input shape (the C code runs one sample)
  int64_t decode_bytes = 4096;  // ExportOptions::decode_bytes

  bool int16() const { return activation_type == ActivationType::kInt16; }
  int element_bytes() const { return int16() ? 2 : 1; }
};

// Where each buffer lives in generated code: the caller's input or output
// array, or an offset in the arena.
struct ArenaPlan {
  enum class Place { kInput, kOutput, kArena };
  struct Buffer {
    Place place = Place::kArena;
    int64_t offset = 0;
    int64_t bytes = 0;
    int first = 0, last = 0;  // layer indices where it is written first and read last
    bool dsp_only = false;    // used by the runtime only where MCUQ_DSP_KERNELS (paired inputs)
  };
  std::vector<Buffer> buffers;     // the tensors' buffers, then the layers' scratch
  std::vector<int> scratch;        // per layer: its scratch buffer (im2col columns), or -1
  int64_t arena_bytes = 0;         // every core
  int64_t arena_bytes_dsp = 0;     // cores with the DSP extension: dsp_only buffers as well
};

// The scratch a layer's kernel needs in the arena while it runs: the two
// im2col columns of an int8 convolution (mcuq_conv2d_im2col_s8), a block of
// decoded weights for codebook and W4A8 ones, the paired inputs of a codebook
// fully connected layer, which only DSP cores use; else 0 bytes.
struct Scratch {
  int64_t bytes = 0;
  bool dsp_only = false;
};
Scratch layer_scratch(const Graph& graph, const Layer& layer);
// Codebook and W4A8 convolutions: the channels whose weights the kernel
// decodes into that scratch at a time.
int64_t decode_block(const Graph& graph, const Layer& layer);

// Plans the arena: buffers whose lifetimes overlap never share bytes (a
// layer's scratch lives while that layer runs); greedy first fit, largest
// first, 4-byte aligned. The dsp_only buffers are placed after all others,
// so that the other offsets, and arena_bytes, are those of a plan without
// them: cores without the DSP extension reserve none of their bytes.
ArenaPlan plan_arena(const Graph& graph);

}  // namespace mcuq::exporter
