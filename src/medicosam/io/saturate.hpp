#pragma once
// Internal: conversion of double to a component type, rounded to nearest and
// clamped for integers (NaN -> 0).
#include <cmath>
#include <limits>
#include <type_traits>

namespace medicosam::io::detail {

template <typename T>
inline T saturate_cast(double v) {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(v);
  } else {
    if (std::isnan(v)) return T{0};
    const double r = std::nearbyint(v);
    if (r <= static_cast<double>(std::numeric_limits<T>::lowest())) {
      return std::numeric_limits<T>::lowest();
    }
    if (r >= static_cast<double>(std::numeric_limits<T>::max())) {
      return std::numeric_limits<T>::max();
    }
    return static_cast<T>(r);
  }
}

}  // namespace medicosam::io::detail
