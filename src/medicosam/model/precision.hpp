#pragma once
// Numeric precision of inference: float32 everywhere, or bfloat16 matrix
// products (weights converted once at load) with float32 layer norms, residual
// stream, positional terms and mask upscaling. Torch-free.
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "medicosam/core/error.hpp"

namespace medicosam::model {

enum class Precision { kFloat32, kBFloat16 };

// "fp32" / "bf16".
const char* precision_name(Precision p);

// True when this CPU computes bfloat16 dot products in hardware (x86
// avx512_bf16 or amx_bf16, as reported by the kernel in /proc/cpuinfo). On
// other CPUs oneDNN would emulate bfloat16, which is slower than float32.
bool cpu_has_native_bf16();

// The CPU's reduced-precision ISA extensions that matter here, e.g.
// "avx512f avx512_vnni avx512_bf16" ("" when none or unknown).
std::string cpu_isa_summary();

// Resolves a user's choice: "auto" (bf16 on a CPU with native bf16, fp32 on
// other CPUs and on CUDA), "fp32" or "bf16" (honoured even where emulated).
// Throws InputError naming the accepted values for anything else.
Precision resolve_precision(const std::string& requested, bool cuda_device);


// ---- definitions (header-only: tiny, and no new translation unit needed)

namespace detail {

// Flags of the first processor in /proc/cpuinfo ("flags" on x86); empty when
// the file is missing (not Linux) or has no such line.
inline std::set<std::string> cpu_flags() {
  std::set<std::string> flags;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream words(line.substr(colon + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  return flags;
}

}  // namespace detail

inline const char* precision_name(Precision p) { return p == Precision::kBFloat16 ? "bf16" : "fp32"; }

inline bool cpu_has_native_bf16() {
  static const bool native = [] {
    const auto f = detail::cpu_flags();
    return f.count("avx512_bf16") > 0 || f.count("amx_bf16") > 0;
  }();
  return native;
}

inline std::string cpu_isa_summary() {
  const auto f = detail::cpu_flags();
  std::string out;
  for (const char* name : {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}) {
    if (f.count(name)) out += (out.empty() ? "" : " ") + std::string(name);
  }
  return out;
}

inline Precision resolve_precision(const std::string& requested, bool cuda_device) {
  if (requested == "fp32") return Precision::kFloat32;
  if (requested == "bf16") return Precision::kBFloat16;
  if (requested == "auto" || requested.empty()) {
    if (cuda_device) return Precision::kFloat32;
    return cpu_has_native_bf16() ? Precision::kBFloat16 : Precision::kFloat32;
  }
  throw InputError("unknown precision '" + requested + "' (expected auto, fp32 or bf16)");
}

}  // namespace medicosam::model
