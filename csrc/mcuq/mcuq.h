// The C++ API of mcuq. Link mcuq::mcuq (find_package(mcuq)).
#pragma once

#include <mcuq/observers.h>
#include <mcuq/ops.h>

namespace mcuq {

// The library's version, "MAJOR.MINOR.PATCH".
const char* version();

namespace detail {
// Referencing a symbol of libmcuq keeps the library, and the op registrations
// it carries, in every program that includes this header, even when the
// linker drops unreferenced shared libraries (--as-needed).
inline const char* const linked_version = mcuq::version();
}  // namespace detail

}  // namespace mcuq
