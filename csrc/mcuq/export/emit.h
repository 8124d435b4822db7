// Internal: what the exporter writes (emit.cpp): C header and source for the
// mcuq runtime, report.json, the summary table, the arena plan. No torch.
#pragma once

#include "mcuq/export/graph.h"

#include <string>
#include <vector>

namespace mcuq::exporter {

std::string emit_header(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source);
std::string emit_source(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source);
std::string emit_report(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source);
std::string summary_table(const Graph& g, const ArenaPlan& arena);
int64_t flash_bytes(const Graph& g);

// vectors.h for the MCU firmware harness (examples/mcu/common/mcu_main.c):
// `n` inputs and the expected outputs (levels, row-major) as const tables.
std::string emit_test_vectors(const Graph& g, const std::string& name, const std::vector<int32_t>& inputs,
                              const std::vector<int32_t>& outputs, int64_t n);

// NAME.h, NAME.c, report.json into `directory`: temporaries first, renamed
// once all are complete.
void write_files(const Graph& g, const ArenaPlan& arena, const std::string& directory, const std::string& name,
                 const std::string& source);

}  // namespace mcuq::exporter
