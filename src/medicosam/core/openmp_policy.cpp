#include "medicosam/core/openmp_policy.hpp"

#include <unistd.h>

#include <cstdlib>

namespace medicosam {

void prefer_passive_openmp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);
}

}  // namespace medicosam
