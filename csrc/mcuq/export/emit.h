// Internal: what the exporter writes (emit.cpp): C header and source for the
// mcuq runtime, report.json, the summary table, the arena plan. No torch.
#pragma once

#include "mcuq/export/graph.h"

#include <string>

namespace mcuq::exporter {

std::string emit_header(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source);
std::string emit_source(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source);
std::string emit_report(const Graph& g, const ArenaPlan& arena, const std::string& name, const std::string& source);
std::string summary_table(const Graph& g, const ArenaPlan& arena);
int64_t flash_bytes(const Graph& g);

// NAME.h, NAME.c, report.json into `directory`: temporaries first, renamed
// once all are complete.
void write_files(const Graph& g, const ArenaPlan& arena, const std::string& directory, const std::string& name,
                 const std::string& source);

}  // namespace mcuq::exporter
