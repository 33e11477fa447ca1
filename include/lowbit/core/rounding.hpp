/// \file
/// \brief Float arithmetic in a fixed order of roundings, where a result must match another
/// implementation bit for bit.
#pragma once

namespace lowbit {

/// x * y + z with the product rounded first, as numpy, torch and ggml's scalar code compute it: a
/// compiler allowed to contract this into an FMA would round once and differ in the last bit.
inline float mul_then_add(float x, float y, float z) noexcept {
  volatile float product = x * y;
  return product + z;
}

}  // namespace lowbit
