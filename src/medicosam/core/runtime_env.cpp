#include "medicosam/core/runtime_env.hpp"

#include <dlfcn.h>
#include <strings.h>
#include <unistd.h>

#include <cstdlib>
#include <initializer_list>

namespace medicosam {

const char* openblas_core_name() {
  using CoreNameFn = char* (*)();
  const auto fn = reinterpret_cast<CoreNameFn>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = fn ? fn() : nullptr;
  return name ? name : "";
}

namespace {

// The OpenBLAS core type this CPU deserves when the library picked an older
// one, else nullptr.
const char* better_openblas_core() {
  const char* current = openblas_core_name();
  if (!*current) return nullptr;  // not OpenBLAS
  // Case-insensitive: OpenBLAS versions spell some names differently ("Cooperlake").
  for (const char* modern : {"Haswell", "Zen", "SkylakeX", "CooperLake", "SapphireRapids"})
    if (::strcasecmp(current, modern) == 0) return nullptr;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

}  // namespace

void tune_runtime_environment(char** argv) {
  bool changed = false;
  if (!std::getenv("OMP_WAIT_POLICY")) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  if (!std::getenv("OPENBLAS_CORETYPE")) {
    if (const char* core = better_openblas_core()) {
      ::setenv("OPENBLAS_CORETYPE", core, 1);
      changed = true;
    }
  }
  if (changed) ::execv("/proc/self/exe", argv);
}

}  // namespace medicosam
