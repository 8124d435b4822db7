// The exporter's output: generated C (tables + NAME_invoke calling the mcuq
// runtime), report.json, the CLI's summary table, and the static arena plan.
#include "mcuq/export/emit.h"
#include "mcuq_runtime.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#ifndef MCUQ_VERSION
#define MCUQ_VERSION "unknown"
#endif

namespace mcuq::exporter {

const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::kConv2d: return "conv2d";
    case LayerKind::kDepthwiseConv2d: return "depthwise_conv2d";
    case LayerKind::kConvTranspose2d: return "conv_transpose2d";
    case LayerKind::kFullyConnected: return "fully_connected";
    case LayerKind::kMaxPool2d: return "max_pool2d";
    case LayerKind::kAvgPool2d: return "avg_pool2d";
    case LayerKind::kAdd: return "add";
    case LayerKind::kSub: return "sub";
    case LayerKind::kMul: return "mul";
    case LayerKind::kConcat: return "concat";
    case LayerKind::kRequantize: return "requantize";
    case LayerKind::kLut: return "lut";
    case LayerKind::kSoftmax: return "softmax";
    case LayerKind::kPad: return "pad2d";
    case LayerKind::kUpsample: return "upsample_nearest";
    case LayerKind::kReshape: return "reshape";
  }
  return "?";
}

namespace {

bool decoded_weights(const Graph& g, const Layer& l) {
  const bool kind = l.kind == LayerKind::kConv2d || l.kind == LayerKind::kDepthwiseConv2d ||
                    l.kind == LayerKind::kFullyConnected;
  return kind && !g.int16() && (!l.codebook.empty() || l.weight_bits == 4);
}

}  // namespace

// Channels a codebook (or W4A8) convolution decodes at a time, within
// graph.decode_bytes: output channels, in pairs where there are several
// blocks (the kernel's step); a grouped convolution all at once; depthwise:
// input channels.
int64_t decode_block(const Graph& g, const Layer& l) {
  const int64_t in_c = g.tensors[l.inputs[0]].shape[0], out_c = g.tensors[l.output].shape[0];
  if (l.kind == LayerKind::kDepthwiseConv2d) {
    const int64_t per_channel = out_c / in_c * l.k_h * l.k_w;
    return in_c * per_channel <= g.decode_bytes ? in_c : std::max<int64_t>(1, g.decode_bytes / per_channel);
  }
  const int64_t taps = in_c / l.groups * l.k_h * l.k_w;
  if (l.groups > 1 || out_c * taps <= g.decode_bytes) return out_c;
  const int64_t block = g.decode_bytes / taps;
  return block >= 2 ? block / 2 * 2 : 1;
}

// Weights per row of a decoded layer's codebook (W4A8: one row, the runtime's
// int4 codebook, for the whole layer).
int64_t codebook_row_weights(const Layer& l) {
  if (l.codebook.empty()) return static_cast<int64_t>(l.weights.size());
  return static_cast<int64_t>(l.weights.size()) / static_cast<int64_t>(l.bias.size()) * l.codebook_channels;
}

Scratch layer_scratch(const Graph& g, const Layer& l) {
  // The runtime's own formulas.
  const int64_t in_c = l.inputs.empty() ? 0 : g.tensors[l.inputs[0]].shape[0];
  if (decoded_weights(g, l) && l.kind == LayerKind::kFullyConnected) {
    // Its inputs paired for the DSP cores' pair tables, within decode_bytes.
    const int64_t in_features = g.tensors[l.inputs[0]].numel();
    const int64_t bytes = MCUQ_FULLY_CONNECTED_CB_SCRATCH(l.weight_bits, in_features, codebook_row_weights(l));
    return {bytes <= g.decode_bytes ? bytes : 0, true};
  }
  if (decoded_weights(g, l) && l.kind == LayerKind::kConv2d) {
    return {MCUQ_CONV2D_CB_SCRATCH(decode_block(g, l), in_c, l.groups, l.k_h, l.k_w)};
  }
  if (decoded_weights(g, l) && l.kind == LayerKind::kDepthwiseConv2d) {
    const int64_t out_c = g.tensors[l.output].shape[0];
    return {MCUQ_DEPTHWISE_CONV2D_CB_SCRATCH(decode_block(g, l), out_c / in_c, l.k_h, l.k_w)};
  }
  if (l.kind != LayerKind::kConv2d || g.int16() || l.weight_bits != 8) return {};
  return {MCUQ_CONV2D_IM2COL_SCRATCH(in_c, l.groups, l.k_h, l.k_w)};
}

ArenaPlan plan_arena(const Graph& g) {
  ArenaPlan plan;
  int buffers = 0;
  for (const TensorInfo& t : g.tensors) buffers = std::max(buffers, t.buffer + 1);
  plan.buffers.resize(buffers);
  for (auto& b : plan.buffers) {
    b.first = static_cast<int>(g.layers.size());
    b.last = -1;
  }
  for (const TensorInfo& t : g.tensors) {
    auto& b = plan.buffers[t.buffer];
    b.bytes = std::max<int64_t>(b.bytes, t.numel() * g.element_bytes());
  }
  for (int i = 0; i < static_cast<int>(g.layers.size()); ++i) {
    const Layer& l = g.layers[i];
    auto& out = plan.buffers[g.tensors[l.output].buffer];
    out.first = std::min(out.first, i);
    out.last = std::max(out.last, i);
    for (int t : l.inputs) {
      auto& in = plan.buffers[g.tensors[t].buffer];
      in.first = std::min(in.first, i);
      in.last = std::max(in.last, i);
    }
  }
  plan.scratch.assign(g.layers.size(), -1);
  for (int i = 0; i < static_cast<int>(g.layers.size()); ++i) {
    const Scratch needed = layer_scratch(g, g.layers[i]);
    if (needed.bytes == 0) continue;
    ArenaPlan::Buffer scratch;
    scratch.bytes = needed.bytes;
    scratch.first = scratch.last = i;
    scratch.dsp_only = needed.dsp_only;
    plan.scratch[i] = static_cast<int>(plan.buffers.size());
    plan.buffers.push_back(scratch);
  }
  buffers = static_cast<int>(plan.buffers.size());
  plan.buffers[g.tensors[g.input].buffer].place = ArenaPlan::Place::kInput;
  plan.buffers[g.tensors[g.output].buffer].place = ArenaPlan::Place::kOutput;
  // Greedy first fit, largest first (TFLite Micro's greedy planner does the same).
  std::vector<int> order;
  for (int i = 0; i < buffers; ++i) {
    if (plan.buffers[i].place == ArenaPlan::Place::kArena && plan.buffers[i].last >= 0) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const auto &x = plan.buffers[a], &y = plan.buffers[b];
    return x.dsp_only != y.dsp_only ? y.dsp_only : x.bytes > y.bytes;
  });
  std::vector<int> placed;
  for (int i : order) {
    auto& b = plan.buffers[i];
    std::vector<std::pair<int64_t, int64_t>> taken;  // [offset, end) of overlapping lifetimes
    for (int j : placed) {
      const auto& o = plan.buffers[j];
      if (!(o.last < b.first || b.last < o.first)) taken.emplace_back(o.offset, o.offset + o.bytes);
    }
    std::sort(taken.begin(), taken.end());
    int64_t offset = 0;
    for (const auto& [start, end] : taken) {
      if (offset + b.bytes <= start) break;
      offset = std::max(offset, (end + 3) / 4 * 4);
    }
    b.offset = offset;
    if (!b.dsp_only) plan.arena_bytes = std::max(plan.arena_bytes, offset + b.bytes);
    plan.arena_bytes_dsp = std::max(plan.arena_bytes_dsp, offset + b.bytes);
    placed.push_back(i);
  }
  plan.arena_bytes = (plan.arena_bytes + 3) / 4 * 4;
  plan.arena_bytes_dsp = (plan.arena_bytes_dsp + 3) / 4 * 4;
  return plan;
}

namespace {

bool weighted(const Layer& l) {
  return l.kind == LayerKind::kConv2d || l.kind == LayerKind::kDepthwiseConv2d ||
         l.kind == LayerKind::kConvTranspose2d || l.kind == LayerKind::kFullyConnected;
}

const char* rounding_enum(mcuq_rounding r) {
  return r == MCUQ_ROUND_SINGLE ? "MCUQ_ROUND_SINGLE" : r == MCUQ_ROUND_SHIFT ? "MCUQ_ROUND_SHIFT" : "MCUQ_ROUND_DOUBLE";
}

const char* rounding_name(mcuq_rounding r) {
  return r == MCUQ_ROUND_SINGLE ? "single" : r == MCUQ_ROUND_SHIFT ? "shift" : "double";
}

// An int32 literal valid in C for every value (INT32_MIN has no literal).
std::string c_int(int64_t v) {
  if (v == INT32_MIN) return "(-2147483647 - 1)";
  return fmt::format("{}", v);
}

std::string c_int64(int64_t v) {
  if (v == INT64_MIN) return "(-INT64_C(9223372036854775807) - 1)";
  return fmt::format("INT64_C({})", v);
}

// float32 that round-trips, always a valid C float literal ("1.00000000f").
std::string c_float(float v) {
  return fmt::format("{:#.9g}f", v);
}

// Text safe inside a C comment.
std::string comment_text(std::string s) {
  for (size_t at = s.find("*/"); at != std::string::npos; at = s.find("*/", at)) s.replace(at, 2, "* /");
  return s;
}

template <typename T, typename F>
std::string table(const std::string& type, const std::string& name, const std::vector<T>& values, F literal) {
  std::string out = fmt::format("static const {} {}[{}] MCUQ_TABLE = {{", type, name, values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    out += (i % 16 == 0 ? "\n    " : " ") + literal(static_cast<int64_t>(values[i])) + (i + 1 < values.size() ? "," : "");
  }
  return out + "\n};\n";
}

std::string identifier(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

std::string layer_symbol(const std::string& name, size_t index, const Layer& l) {
  return fmt::format("{}_l{}_{}", name, index, identifier(l.name));
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string banner(const std::string& name, const std::string& source) {
  return fmt::format(
      "/* {}: generated by mcuq {} from {}.\n"
      " * Do not edit: re-export the model instead. Integer-only C99 for the mcuq\n"
      " * runtime (csrc/runtime); bit-exact with mcuq's LibTorch integer reference. */\n",
      name, MCUQ_VERSION, comment_text(source));
}

std::string upper_case(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void check_name(const std::string& name) {
  bool ok = !name.empty() && (std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_');
  for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  TORCH_CHECK_VALUE(ok, fmt::format("mcuq.export: expected name to be a C identifier, but got '{}'", name));
  // NAME.h must not shadow a runtime header it includes.
  for (const char* taken : {"mcuq_runtime", "mcuq_arith", "mcuq_internal", "conv2d_impl", "pool_impl", "dot_s8"}) {
    TORCH_CHECK_VALUE(name != taken, fmt::format("mcuq.export: name '{}' is taken by a runtime header", name));
  }
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<int>(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Bytes of a codebook layer's index table: weight_bits per weight.
size_t index_bytes(const Layer& l) { return (l.weights.size() * static_cast<size_t>(l.weight_bits) + 7) / 8; }

// Codebook weights: weight i's index in its codebook row, weight_bits wide
// at bit i * weight_bits, least significant bit first (mcuq_codebook_weights).
std::vector<uint8_t> index_table(const Layer& l) {
  const int64_t bits = l.weight_bits, levels = int64_t{1} << bits;
  const int64_t per_channel = static_cast<int64_t>(l.weights.size()) / static_cast<int64_t>(l.bias.size());
  std::vector<uint8_t> packed(index_bytes(l), 0);
  for (size_t i = 0; i < l.weights.size(); ++i) {
    const int64_t row = static_cast<int64_t>(i) / per_channel / l.codebook_channels;
    const auto first = l.codebook.begin() + row * levels;
    const int64_t index = std::find(first, first + levels, l.weights[i]) - first;
    TORCH_CHECK(index < levels, "mcuq.export: internal error: a weight of ", l.name, " is not in its codebook");
    const int64_t bit = static_cast<int64_t>(i) * bits;
    const uint32_t field = static_cast<uint32_t>(index) << (bit % 8);
    packed[bit / 8] = static_cast<uint8_t>(packed[bit / 8] | (field & 0xFF));
    if (field > 0xFF) packed[bit / 8 + 1] = static_cast<uint8_t>(packed[bit / 8 + 1] | (field >> 8));
  }
  return packed;
}

// Weights as the C table stores them: int8, or 4-bit packed two per byte
// (weight i in nibble i & 1 of byte i >> 1, low first; MCUQ_READ_S4).
// Codebook layers store index_table and their codebook instead.
std::vector<int8_t> weight_table(const Layer& l) {
  if (l.weight_bits != 4 || !l.codebook.empty()) return l.weights;
  std::vector<int8_t> packed((l.weights.size() + 1) / 2, 0);
  for (size_t i = 0; i < l.weights.size(); ++i) {
    const auto nibble = static_cast<uint8_t>(static_cast<uint8_t>(l.weights[i]) & 0x0F);
    packed[i / 2] = static_cast<int8_t>(static_cast<uint8_t>(packed[i / 2]) | (nibble << (4 * (i % 2))));
  }
  return packed;
}

// Bytes of the weight tables: int8 or packed weights, or indices + codebook.
int64_t weight_bytes(const Layer& l) {
  if (!l.codebook.empty()) return static_cast<int64_t>(index_bytes(l) + l.codebook.size());
  return static_cast<int64_t>(weight_table(l).size());
}

int64_t layer_flash_bytes(const Graph& g, const Layer& l) {
  int64_t bytes = weight_bytes(l) + static_cast<int64_t>(l.table.size()) * g.element_bytes() +
                  static_cast<int64_t>(l.exp_table.size()) * 4;
  if (weighted(l)) bytes += static_cast<int64_t>(l.bias.size()) * (g.int16() ? 8 : 4) + l.requant.multiplier.size() * 5;
  return bytes;
}

}  // namespace

int64_t flash_bytes(const Graph& g) {
  int64_t total = 0;
  for (const Layer& l : g.layers) total += layer_flash_bytes(g, l);
  return total;
}

std::string emit_header(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source) {
  check_name(name);
  const TensorInfo& in = g.tensors[g.input];
  const TensorInfo& out = g.tensors[g.output];
  const std::string upper = upper_case(name);
  std::string h = banner(name, source);
  h += fmt::format("#ifndef {0}_H_\n#define {0}_H_\n\n#include <stdint.h>\n\n#include \"mcuq_runtime.h\"\n\n", upper);
  h += "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";
  const auto io = [&](const char* what, const TensorInfo& t) {
    return fmt::format(
        "/* {0}: {1} levels, shape {2}{9}; real = (q - ZERO_POINT) * SCALE. */\n"
        "#define {3}_{0}_SIZE {4}\n#define {3}_{0}_SCALE {5}\n#define {3}_{0}_ZERO_POINT ({6})\n"
        "#define {3}_{0}_QUANT_MIN ({7})\n#define {3}_{0}_QUANT_MAX ({8})\n\n",
        what, g.int16() ? "int16" : "int8", shape_text(t.shape), upper, t.numel(), c_float(t.scale), t.zero_point,
        t.quant_min, t.quant_max,
        t.shape.size() == 3 ? " (C, H, W: channels first, PyTorch's NCHW without the batch)" : "");
  };
  h += io("INPUT", in);
  h += io("OUTPUT", out);
  const int64_t arena_bytes = std::max<int64_t>(arena.arena_bytes, 4);
  const std::string arena_size =
      arena.arena_bytes_dsp > arena_bytes
          ? fmt::format("(MCUQ_DSP_KERNELS ? {} : {})", arena.arena_bytes_dsp, arena_bytes)
          : fmt::format("{}", arena_bytes);
  h += fmt::format(
      "/* Scratch memory NAME_invoke needs, in bytes (a multiple of 4), e.g.\n"
      " * static {2}_activation_t arena[{0}_ARENA_SIZE / sizeof({2}_activation_t)];{3} */\n"
      "#define {0}_ARENA_SIZE {1}\n\n",
      upper, arena_size, name,
      arena.arena_bytes_dsp > arena_bytes
          ? "\n * More on cores with the DSP extension (MCUQ_DSP_KERNELS): their fully\n"
            " * connected codebook kernels pair the layer's inputs in it."
          : "");
  h += fmt::format("typedef {} {}_activation_t;\n\n", g.int16() ? "int16_t" : "int8_t", name);
  h += fmt::format(
      "/* Runs the model on one input ({0}_INPUT_SIZE levels) and writes\n"
      " * {0}_OUTPUT_SIZE levels to output. Returns MCUQ_OK or the first kernel's\n"
      " * error status. Input, output and arena must not overlap. Input levels\n"
      " * must lie in [{0}_INPUT_QUANT_MIN, {0}_INPUT_QUANT_MAX]: the exporter's\n"
      " * overflow proof assumes it. */\n"
      "mcuq_status {1}_invoke(const {1}_activation_t *input, {1}_activation_t *output, void *arena);\n\n",
      upper, name);
  h += fmt::format("#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {}_H_ */\n", upper);
  return h;
}

std::string emit_source(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source) {
  check_name(name);
  const std::string type = g.int16() ? "int16_t" : "int8_t";
  const std::string suffix = g.int16() ? "s16" : "s8";
  std::string tables, body;
  const auto pointer = [&](int tensor, bool writable) {
    const auto& b = arena.buffers[g.tensors[tensor].buffer];
    if (b.place == ArenaPlan::Place::kInput) return std::string("input");
    if (b.place == ArenaPlan::Place::kOutput) return std::string("output");
    return fmt::format("({}{} *)(base + {})", writable ? "" : "const ", type, b.offset);
  };
  const auto out_at = [&](int tensor, int64_t offset) {
    const std::string p = pointer(tensor, true);
    return offset == 0 ? p : fmt::format("({} + {})", p, offset);
  };
  const auto requant = [&](const Layer& l, const std::string& sym) {
    return fmt::format("    const mcuq_requant requant = {{{0}_multiplier, {0}_shift, {1}, {2}, {3}, {4}, {5}}};\n", sym,
                       l.requant.multiplier.size() > 1 ? 1 : 0, rounding_enum(l.requant.rounding),
                       c_int(l.requant.zero_point), c_int(l.requant.act_min), c_int(l.requant.act_max));
  };
  const auto check = "    if (status != MCUQ_OK) return status;\n  }\n";
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const Layer& l = g.layers[i];
    const std::string sym = layer_symbol(name, i, l);
    const TensorInfo& in = g.tensors[l.inputs[0]];
    const TensorInfo& out = g.tensors[l.output];
    if (l.kind == LayerKind::kReshape) continue;
    // The op and source line stay in report.json: the C is the same whichever
    // front end (TorchScript, torch.export) and machine produced it.
    body += fmt::format("  /* {}: {} {} -> {} */\n  {{\n", comment_text(l.name), layer_kind_name(l.kind),
                        shape_text(in.shape), shape_text(out.shape));
    if (weighted(l)) {
      const bool codebook = !l.codebook.empty();
      if (codebook) {
        tables += table("uint8_t", sym + "_indices", index_table(l), c_int);
        tables += table("int8_t", sym + "_codebook", l.codebook, c_int);
      } else {
        tables += table("int8_t", sym + "_weights", weight_table(l), c_int);
      }
      tables += g.int16() ? table("int64_t", sym + "_bias", l.bias, c_int64) : table("int32_t", sym + "_bias", l.bias, c_int);
      tables += table("int32_t", sym + "_multiplier", l.requant.multiplier, c_int);
      tables += table("int8_t", sym + "_shift", l.requant.shift, c_int);
      body += requant(l, sym);
      const std::string weighted_suffix = l.weight_bits == 4 ? suffix + "_w4" : suffix;
      // Codebook and W4A8 weights run through the _cb kernels: W4A8's packed
      // nibbles are indices into the runtime's mcuq_codebook_s4.
      const bool decode = decoded_weights(g, l);
      if (codebook) {
        body += fmt::format("    const mcuq_codebook_weights weights = {{{0}_indices, {0}_codebook, {1}, {2}}};\n", sym,
                            l.weight_bits, codebook_row_weights(l));
      } else if (decode) {
        body += fmt::format(
            "    const mcuq_codebook_weights weights = {{(const uint8_t *){}_weights, mcuq_codebook_s4, 4, {}}};\n", sym,
            codebook_row_weights(l));
      }
      if (decode && l.kind == LayerKind::kFullyConnected) {
        const std::string scratch =
            arena.scratch[i] >= 0
                ? fmt::format("MCUQ_DSP_KERNELS ? (int8_t *)(base + {}) : 0", arena.buffers[arena.scratch[i]].offset)
                : "0";
        body += fmt::format("    const mcuq_status status = mcuq_fully_connected_s8_cb({}, {}, {}, &weights, {}_bias, &requant, {}, {});\n",
                            in.numel(), out.numel(), pointer(l.inputs[0], false), sym, scratch, out_at(l.output, 0));
      } else if (l.kind == LayerKind::kFullyConnected) {
        body += fmt::format("    const mcuq_status status = mcuq_fully_connected_{}({}, {}, {}, {}_weights, {}_bias, &requant, {});\n",
                            weighted_suffix, in.numel(), out.numel(), pointer(l.inputs[0], false), sym, sym,
                            out_at(l.output, 0));
      } else {
        // [C, L] (a Conv1d's) is [C, 1, L].
        const int64_t ih = in.shape.size() == 2 ? 1 : in.shape[1], iw = in.shape.back();
        const int64_t oh = out.shape.size() == 2 ? 1 : out.shape[1], ow = out.shape.back();
        body += fmt::format(
            "    const mcuq_conv2d_params params = {{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}};\n",
            in.shape[0], ih, iw, out.shape[0], oh, ow, l.k_h, l.k_w, l.stride_h, l.stride_w, l.pad_h,
            l.pad_w, l.dilation_h, l.dilation_w, l.groups, c_int(in.zero_point));
        if (decode) {
          body += fmt::format(
              "    const mcuq_status status = mcuq_{}conv2d_s8_cb(&params, {}, &weights, {}_bias, &requant, {}, "
              "(int8_t *)(base + {}), {});\n",
              l.kind == LayerKind::kDepthwiseConv2d ? "depthwise_" : "", pointer(l.inputs[0], false), sym,
              decode_block(g, l), arena.buffers[arena.scratch[i]].offset, out_at(l.output, 0));
        } else if (l.kind == LayerKind::kConvTranspose2d) {
          body += fmt::format("    const mcuq_status status = mcuq_conv_transpose2d_{}(&params, {}, {}_weights, {}_bias, &requant, {});\n",
                              suffix, pointer(l.inputs[0], false), sym, sym, out_at(l.output, 0));
        } else if (arena.scratch[i] >= 0) {
          body += fmt::format(
              "    const mcuq_status status = mcuq_conv2d_im2col_s8(&params, {}, {}_weights, {}_bias, &requant, "
              "(int8_t *)(base + {}), {});\n",
              pointer(l.inputs[0], false), sym, sym, arena.buffers[arena.scratch[i]].offset, out_at(l.output, 0));
        } else {
          body += fmt::format("    const mcuq_status status = mcuq_{}conv2d_{}(&params, {}, {}_weights, {}_bias, &requant, {});\n",
                              l.kind == LayerKind::kDepthwiseConv2d ? "depthwise_" : "", weighted_suffix,
                              pointer(l.inputs[0], false), sym, sym, out_at(l.output, 0));
        }
      }
    } else if (l.kind == LayerKind::kMaxPool2d || l.kind == LayerKind::kAvgPool2d) {
      // PyTorch's pooled size (the output tensor may be flattened: mean over H and W).
      const auto pooled = [&](int64_t size, int64_t k, int64_t stride, int64_t pad) {
        const int64_t span = size + 2 * pad - k;
        int64_t out = (l.ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
        if (l.ceil_mode && (out - 1) * stride >= size + pad) --out;
        return out;
      };
      std::vector<int64_t> view = l.pool_view;
      if (view.empty()) view = {in.shape[0], in.shape.size() == 2 ? 1 : in.shape[1], in.shape.back()};  // [C, L]: [C, 1, L]
      const int64_t ih = view[1], iw = view[2];
      const int64_t oh = pooled(ih, l.k_h, l.stride_h, l.pad_h);
      const int64_t ow = pooled(iw, l.k_w, l.stride_w, l.pad_w);
      body += fmt::format(
          "    const mcuq_pool2d_params params = {{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}};\n",
          view[0], ih, iw, oh, ow, l.k_h, l.k_w, l.stride_h, l.stride_w, l.pad_h, l.pad_w,
          l.count_include_pad, c_int(l.requant.zero_point), c_int(l.requant.act_min), c_int(l.requant.act_max));
      body += fmt::format("    const mcuq_status status = mcuq_{}_pool2d_{}(&params, {}, {});\n",
                          l.kind == LayerKind::kMaxPool2d ? "max" : "avg", suffix, pointer(l.inputs[0], false),
                          out_at(l.output, 0));
    } else if (l.kind == LayerKind::kAdd || l.kind == LayerKind::kSub) {
      const TensorInfo& b = g.tensors[l.inputs[1]];
      body += fmt::format(
          "    const mcuq_add_params params = {{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}};\n",
          out.numel(), l.left_shift, c_int(in.zero_point), c_int(l.a_multiplier), l.a_shift, c_int(b.zero_point),
          c_int(l.b_multiplier), l.b_shift, c_int(l.requant.zero_point), c_int(l.requant.multiplier[0]),
          static_cast<int>(l.requant.shift[0]), rounding_enum(l.requant.rounding), c_int(l.requant.act_min),
          c_int(l.requant.act_max));
      body += fmt::format("    const mcuq_status status = mcuq_{}_{}(&params, {}, {}, {});\n", layer_kind_name(l.kind),
                          suffix, pointer(l.inputs[0], false), pointer(l.inputs[1], false), out_at(l.output, 0));
    } else if (l.kind == LayerKind::kMul) {
      // The second input: the output's shape [C, ...], or broadcast from
      // [C, 1, ...], [1, ...] or [1, 1, ...] (the lowering puts it second).
      const TensorInfo& b = g.tensors[l.inputs[1]];
      const int64_t outer = out.shape[0], inner = out.numel() / outer;
      const bool full_inner = std::equal(b.shape.begin() + 1, b.shape.end(), out.shape.begin() + 1);
      const int64_t b_outer_stride = b.shape[0] == outer ? (full_inner ? inner : 1) : 0;
      body += fmt::format(
          "    const mcuq_mul_params params = {{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}};\n", outer, inner,
          b_outer_stride, full_inner ? 1 : 0, c_int(in.zero_point), c_int(b.zero_point),
          c_int(l.requant.multiplier[0]), static_cast<int>(l.requant.shift[0]), rounding_enum(l.requant.rounding),
          c_int(l.requant.zero_point), c_int(l.requant.act_min), c_int(l.requant.act_max));
      body += fmt::format("    const mcuq_status status = mcuq_mul_{}(&params, {}, {}, {});\n", suffix,
                          pointer(l.inputs[0], false), pointer(l.inputs[1], false), out_at(l.output, 0));
    } else if (l.kind == LayerKind::kRequantize || l.kind == LayerKind::kConcat) {
      const std::vector<Requant> pieces = l.kind == LayerKind::kConcat ? l.pieces : std::vector<Requant>{l.requant};
      int64_t offset = 0;
      body += "    mcuq_status status = MCUQ_OK;\n";
      for (size_t p = 0; p < pieces.size(); ++p) {
        const Requant& r = pieces[p];
        const TensorInfo& piece = g.tensors[l.inputs[p]];
        body += fmt::format(
            "    {{\n      const mcuq_requantize_params params = {{{}, {}, {}, {}, {}, {}, {}, {}}};\n"
            "      status = mcuq_requantize_{}(&params, {}, {});\n      if (status != MCUQ_OK) return status;\n    }}\n",
            piece.numel(), c_int(piece.zero_point), c_int(r.multiplier[0]), static_cast<int>(r.shift[0]),
            rounding_enum(r.rounding), c_int(r.zero_point), c_int(r.act_min), c_int(r.act_max), suffix,
            pointer(l.inputs[p], false), out_at(l.output, offset));
        offset += piece.numel();
      }
    } else if (l.kind == LayerKind::kSoftmax) {
      tables += table("int32_t", sym + "_exp", l.exp_table, c_int);
      const int64_t depth = out.shape.back();
      body += fmt::format(
          "    const mcuq_softmax_params params = {{{}, {}, {}, {}, {}, {}, {}, {}}};\n"
          "    const mcuq_status status = mcuq_softmax_s8(&params, {}_exp, {}, {});\n",
          out.numel() / depth, depth, c_int(l.requant.multiplier[0]), static_cast<int>(l.requant.shift[0]),
          rounding_enum(l.requant.rounding), c_int(l.requant.zero_point), c_int(l.requant.act_min),
          c_int(l.requant.act_max), sym, pointer(l.inputs[0], false), out_at(l.output, 0));
    } else if (l.kind == LayerKind::kPad || l.kind == LayerKind::kUpsample) {
      const int64_t ih = in.shape.size() == 2 ? 1 : in.shape[1], iw = in.shape.back();  // [C, L]: [C, 1, L]
      if (l.kind == LayerKind::kPad) {
        body += fmt::format("    const mcuq_pad2d_params params = {{{}, {}, {}, {}, {}, {}, {}, {}}};\n", in.shape[0], ih,
                            iw, l.pad_h, l.pad_bottom, l.pad_w, l.pad_right, c_int(in.zero_point));
      } else {
        body += fmt::format("    const mcuq_upsample_params params = {{{}, {}, {}, {}, {}}};\n", in.shape[0], ih, iw,
                            l.factor_h, l.factor_w);
      }
      body += fmt::format("    const mcuq_status status = mcuq_{}_{}(&params, {}, {});\n", layer_kind_name(l.kind),
                          suffix, pointer(l.inputs[0], false), out_at(l.output, 0));
    } else if (l.kind == LayerKind::kLut) {
      tables += table(type, sym + "_table", l.table, c_int);
      if (g.int16()) {
        body += fmt::format(
            "    const mcuq_lut_s16_params params = {{{}, {}, {}}};\n"
            "    const mcuq_status status = mcuq_lut_s16(&params, {}_table, {}, {});\n",
            out.numel(), c_int(l.lut_start), l.lut_step_shift, sym, pointer(l.inputs[0], false), out_at(l.output, 0));
      } else {
        body += fmt::format("    const mcuq_status status = mcuq_lut_s8({}, {}_table, {}, {});\n", out.numel(), sym,
                            pointer(l.inputs[0], false), out_at(l.output, 0));
      }
    }
    body += check;
  }
  std::string c = banner(name, source);
  c += fmt::format("#include \"{}.h\"\n\n#include <stddef.h>\n\n", name);
  // A runtime copied from another mcuq release fails here, not at run time.
  c += fmt::format(
      "#if MCUQ_RUNTIME_VERSION != {0}\n"
      "#error \"{1}.c needs the mcuq runtime of version {0} (mcuq.runtime_dir() of the mcuq that exported it)\"\n"
      "#endif\n\n",
      MCUQ_RUNTIME_VERSION, name);
  c += tables;
  c += fmt::format(
      "\nmcuq_status {0}_invoke(const {1} *input, {1} *output, void *arena) {{\n"
      "  unsigned char *const base = (unsigned char *)arena;\n"
      "  (void)base;\n"
      "  if (input == NULL || output == NULL || arena == NULL) return MCUQ_ERROR_NULL;\n",
      name, type);
  c += body;
  c += "  return MCUQ_OK;\n}\n";
  return c;
}

std::string emit_report(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source) {
  const auto tensor_json = [&](int t) {
    const TensorInfo& x = g.tensors[t];
    return fmt::format("{{\"shape\": [{}], \"scale\": {:.9g}, \"zero_point\": {}, \"quant_min\": {}, \"quant_max\": {}}}",
                       fmt::join(x.shape, ", "), x.scale, x.zero_point, x.quant_min, x.quant_max);
  };
  std::string layers;
  int64_t macs = 0;
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const Layer& l = g.layers[i];
    macs += l.macs;
    std::vector<std::string> inputs;
    for (int t : l.inputs) inputs.push_back(tensor_json(t));
    const auto& buffer = arena.buffers[g.tensors[l.output].buffer];
    const std::string place = buffer.place == ArenaPlan::Place::kInput ? "\"input\""
        : buffer.place == ArenaPlan::Place::kOutput ? "\"output\"" : fmt::format("{}", buffer.offset);
    std::string extra;
    if (weighted(l)) {
      extra += fmt::format(", \"weight_bits\": {}, \"bits_per_weight\": {:.3f}, \"weight_scales\": [{}], \"accumulator_bound\": {}, \"headroom_bits\": {:.2f}",
                           l.weight_bits, 8.0 * static_cast<double>(weight_bytes(l)) / static_cast<double>(l.weights.size()),
                           fmt::join(l.weight_scale, ", "), l.accumulator_bound, l.headroom_bits);
      if (!l.codebook.empty()) {
        extra += fmt::format(", \"codebook\": {{\"levels\": {}, \"rows\": {}, \"channels_per_row\": {}, \"index_bytes\": {}, \"codebook_bytes\": {}}}",
                             l.codebook_levels, l.codebook.size() >> l.weight_bits, l.codebook_channels,
                             index_bytes(l), l.codebook.size());
      }
    }
    if (l.kind == LayerKind::kLut && g.int16()) {
      extra += fmt::format(", \"lut_start\": {}, \"lut_step\": {}, \"lut_max_error_levels\": {}", l.lut_start,
                           1 << l.lut_step_shift, l.lut_error_levels);
    }
    if (weighted(l) || l.kind == LayerKind::kRequantize || l.kind == LayerKind::kAdd || l.kind == LayerKind::kSub ||
        l.kind == LayerKind::kMul || l.kind == LayerKind::kSoftmax) {
      std::vector<int> shifts(l.requant.shift.begin(), l.requant.shift.end());
      extra += fmt::format(", \"multipliers\": [{}], \"shifts\": [{}], \"rounding\": \"{}\", \"act_min\": {}, \"act_max\": {}",
                           fmt::join(l.requant.multiplier, ", "), fmt::join(shifts, ", "),
                           rounding_name(l.requant.rounding), l.requant.act_min, l.requant.act_max);
    }
    layers += fmt::format(
        "{}    {{\"index\": {}, \"name\": {}, \"kind\": \"{}\", \"source\": {}, \"inputs\": [{}], \"output\": {}, "
        "\"macs\": {}, \"weight_bytes\": {}, \"flash_bytes\": {}, \"arena_offset\": {}, \"sqnr_db\": {}{}}}",
        i == 0 ? "" : ",\n", i, json_string(l.name), layer_kind_name(l.kind), json_string(l.source),
        fmt::join(inputs, ", "), tensor_json(l.output), l.macs, weight_bytes(l), layer_flash_bytes(g, l), place,
        l.has_sqnr ? fmt::format("{:.2f}", l.sqnr_db) : std::string("null"), extra);
  }
  return fmt::format(
      "{{\n  \"name\": {},\n  \"source\": {},\n  \"mcuq_version\": \"{}\",\n  \"activations\": \"{}\",\n"
      "  \"input\": {},\n  \"output\": {},\n  \"flash_bytes\": {},\n  \"arena_bytes\": {},\n  \"arena_bytes_dsp\": {},\n"
      "  \"macs\": {},\n  \"layers\": [\n{}\n  ]\n}}\n",
      json_string(name), json_string(source), MCUQ_VERSION, g.int16() ? "int16" : "int8", tensor_json(g.input),
      tensor_json(g.output), flash_bytes(g), arena.arena_bytes, arena.arena_bytes_dsp, macs, layers);
}

std::string summary_table(const Graph& g, const ArenaPlan& arena) {
  std::string out = fmt::format("{:>3}  {:<24} {:<17} {:<14} {:>10} {:>9} {:>8} {:>8}\n", "#", "layer", "kind",
                                "output", "MACs", "flash B", "arena@", "SQNR dB");
  int64_t macs = 0;
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const Layer& l = g.layers[i];
    macs += l.macs;
    const auto& b = arena.buffers[g.tensors[l.output].buffer];
    const std::string place = b.place == ArenaPlan::Place::kInput ? "input"
        : b.place == ArenaPlan::Place::kOutput ? "output" : fmt::format("{}", b.offset);
    std::string name = l.name.size() > 24 ? l.name.substr(0, 23) + "~" : l.name;
    out += fmt::format("{:>3}  {:<24} {:<17} {:<14} {:>10} {:>9} {:>8} {:>8}\n", i, name, layer_kind_name(l.kind),
                       shape_text(g.tensors[l.output].shape), l.macs, layer_flash_bytes(g, l), place,
                       l.has_sqnr ? fmt::format("{:.1f}", l.sqnr_db) : std::string("-"));
  }
  const std::string dsp = arena.arena_bytes_dsp > arena.arena_bytes
                              ? fmt::format(" ({} B on DSP cores)", arena.arena_bytes_dsp)
                              : std::string();
  out += fmt::format("total: {} layers, {} activations, flash {} B (tables), arena {} B{}, {} MACs\n",
                     g.layers.size(), g.int16() ? "int16" : "int8", flash_bytes(g), arena.arena_bytes, dsp, macs);
  return out;
}

std::string emit_test_vectors(const Graph& g, const std::string& name, const std::vector<int32_t>& inputs,
                              const std::vector<int32_t>& outputs, int64_t n) {
  check_name(name);
  const std::string type = g.int16() ? "int16_t" : "int8_t";
  const std::string upper = upper_case(name);
  const auto rows = [&](const std::vector<int32_t>& values) {
    const size_t per_row = values.size() / static_cast<size_t>(std::max<int64_t>(n, 1));
    std::string text;
    for (int64_t r = 0; r < n; ++r) {
      text += "    {";
      for (size_t i = 0; i < per_row; ++i) {
        text += (i == 0 ? "" : i % 24 == 0 ? ",\n     " : ", ") + c_int(values[r * per_row + i]);
      }
      text += r + 1 < n ? "},\n" : "}\n";
    }
    return text;
  };
  return fmt::format(
      "/* Test vectors for {0}: input levels and the LibTorch integer reference's output\n"
      " * levels (examples/mcu/common/mcu_main.c compares them on the target). */\n"
      "#include <stdint.h>\n#include \"mcuq_runtime.h\"\n#include \"{0}.h\"\n#define MCUQ_VECTORS {2}u\n"
      "static const {3} mcuq_test_inputs[{2}][{1}_INPUT_SIZE] MCUQ_TABLE = {{\n{4}}};\n"
      "static const {3} mcuq_test_outputs[{2}][{1}_OUTPUT_SIZE] MCUQ_TABLE = {{\n{5}}};\n",
      name, upper, n, type, rows(inputs), rows(outputs));
}

void write_files(const Graph& g, const ArenaPlan& arena, const std::string& directory, const std::string& name,
                 const std::string& source) {
  namespace fs = std::filesystem;
  check_name(name);
  const std::vector<std::pair<std::string, std::string>> files = {
      {name + ".h", emit_header(g, arena, name, source)},
      {name + ".c", emit_source(g, arena, name, source)},
      {"report.json", emit_report(g, arena, name, source)}};
  fs::path dir = fs::path(directory).lexically_normal();
  if (dir.filename().empty() && dir.has_parent_path()) dir = dir.parent_path();  // "out/" -> "out"
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
    TORCH_CHECK_VALUE(fs::is_directory(parent, ec),
                      fmt::format("mcuq.export: cannot create output directory '{}': its parent '{}' does not exist",
                                  directory, parent.string()));
    fs::create_directory(dir, ec);
    TORCH_CHECK(!ec, fmt::format("mcuq.export: cannot create output directory '{}': {}", directory, ec.message()));
  }
  TORCH_CHECK_VALUE(fs::is_directory(dir, ec),
                    fmt::format("mcuq.export: output path '{}' exists and is not a directory", directory));
  std::vector<fs::path> temporaries;
  const auto cleanup = [&] {
    for (const auto& t : temporaries) fs::remove(t, ec);
  };
  for (const auto& [file, text] : files) {
    const fs::path tmp = dir / fmt::format(".{}.tmp{}", file, static_cast<long>(::getpid()));
    std::ofstream stream(tmp, std::ios::binary | std::ios::trunc);
    if (stream) {
      temporaries.push_back(tmp);
      stream << text;
      stream.close();
    }
    if (!stream) {
      const std::string why = std::strerror(errno);
      cleanup();
      TORCH_CHECK(false, fmt::format("mcuq.export: cannot write '{}': {}; nothing was written", (dir / file).string(), why));
    }
  }
  for (size_t i = 0; i < files.size(); ++i) {
    fs::rename(temporaries[i], dir / files[i].first, ec);
    if (ec) {
      const std::string why = ec.message();
      cleanup();
      TORCH_CHECK(false, fmt::format("mcuq.export: cannot write '{}': {}", (dir / files[i].first).string(), why));
    }
  }
}

}  // namespace mcuq::exporter
