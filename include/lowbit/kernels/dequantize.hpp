/// \file
/// \brief Dequantization, the public entry points: a quantized matrix to a dense fp32 or bf16 one.
///
///   lowbit::dequantize(w, out, ld_out)                      checked; best ISA; one thread
///   lowbit::dequantize(w, out, ld_out, pool)                ... split over an executor's threads
///   lowbit::dequantize(w, out, out_size, ld_out, ...)       ... also checks out's size
///   lowbit::dequantize_rows<arch::avx2_tag>(w, r0, r1, out, ld_out)   unchecked kernel entry
///
/// Every path computes (decode(code) - decode(zero)) * scale in float exactly as
/// reference::dequantize_rows does, so results are bit-identical on every ISA (bf16 output: the
/// same round-to-nearest-even conversion as lowbit::bf16(float)).
#pragma once

#include <cstddef>
#include <limits>
#include <type_traits>
#include <utility>

#include "../arch/dispatch.hpp"
#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../core/parallel.hpp"
#include "../layout/quantized_matrix.hpp"
#include "simd/dequantize.hpp"

namespace lowbit {

namespace detail {

constexpr std::size_t unknown_size = std::numeric_limits<std::size_t>::max();

template <class Scheme, class Out>
void check_dequantize(const quantized_view<Scheme>& w, const Out* out, std::size_t out_size, std::size_t ld_out,
                      isa path) {
  w.validate();
  LOWBIT_CHECK(out != nullptr, "dequantize: out is null");
  LOWBIT_CHECK(ld_out >= w.cols(), "dequantize: ld_out=" << ld_out << " is smaller than cols=" << w.cols());
  LOWBIT_CHECK(w.rows() - 1 <= (std::numeric_limits<std::size_t>::max() - w.cols()) / ld_out,
               "dequantize: rows=" << w.rows() << " x ld_out=" << ld_out << " overflows the address space");
  const std::size_t needed = (w.rows() - 1) * ld_out + w.cols();
  LOWBIT_CHECK(out_size == unknown_size || out_size >= needed,
               "dequantize: out holds " << out_size << " elements but rows=" << w.rows() << ", cols=" << w.cols()
                                        << ", ld_out=" << ld_out << " need " << needed);
  LOWBIT_CHECK(isa_supported(path), "dequantize: the " << isa_name(path) << " path is not available here (compiled: "
                                                       << (isa_compiled(path) ? "yes" : "no")
                                                       << ", cpu: " << (cpu_has(path) ? "yes" : "no") << ")");
}

template <class Scheme, class Out, class Executor>
void dequantize_checked(const quantized_view<Scheme>& w, Out* out, std::size_t out_size, std::size_t ld_out,
                        Executor&& exec, isa path, store_policy policy) {
  static_assert(std::is_same<Out, float>::value || std::is_same<Out, bf16>::value,
                "dequantize writes float or lowbit::bf16");
  check_dequantize(w, out, out_size, ld_out, path);
  // Decide streaming once for the whole matrix, not per executor chunk.
  const store_policy resolved = resolve_store_policy(policy, w.rows() * w.cols() * sizeof(Out));
  dispatch(path, [&](auto tag) {
    using tag_type = decltype(tag);
    exec(w.rows(), [&](std::size_t begin, std::size_t end) {
      dequantize_rows<tag_type>(w, begin, end, out + begin * ld_out, ld_out, resolved);
    });
  });
}

template <class T>
using enable_if_executor =
    std::enable_if_t<!std::is_arithmetic<std::decay_t<T>>::value && !std::is_pointer<std::decay_t<T>>::value, int>;

}  // namespace detail

/// Dequantizes all of w into out (row r at out + r * ld_out; elements past cols in a row are left
/// alone) with the ISA `path`, splitting rows over `exec` (any executor, see core/parallel.hpp).
/// Throws lowbit::error for an invalid view, a null out, ld_out < cols, or a path that is not
/// compiled here or not run by this CPU. `policy` picks ordinary or non-temporal stores
/// (automatic: non-temporal above streaming_threshold_bytes of output).
template <class Scheme, class Executor = serial_executor, detail::enable_if_executor<Executor> = 0>
void dequantize(const quantized_view<Scheme>& w, float* out, std::size_t ld_out, Executor&& exec = Executor{},
                isa path = best_isa(), store_policy policy = store_policy::automatic) {
  detail::dequantize_checked(w, out, detail::unknown_size, ld_out, std::forward<Executor>(exec), path, policy);
}

/// The same to bf16 (round to nearest even, as lowbit::bf16(float)).
template <class Scheme, class Executor = serial_executor, detail::enable_if_executor<Executor> = 0>
void dequantize(const quantized_view<Scheme>& w, bf16* out, std::size_t ld_out, Executor&& exec = Executor{},
                isa path = best_isa(), store_policy policy = store_policy::automatic) {
  detail::dequantize_checked(w, out, detail::unknown_size, ld_out, std::forward<Executor>(exec), path, policy);
}

/// As above, and also checks that out, of out_size elements, holds (rows - 1) * ld_out + cols.
template <class Scheme, class Out, class Executor = serial_executor, detail::enable_if_executor<Executor> = 0>
void dequantize(const quantized_view<Scheme>& w, Out* out, std::size_t out_size, std::size_t ld_out,
                Executor&& exec = Executor{}, isa path = best_isa(), store_policy policy = store_policy::automatic) {
  detail::dequantize_checked(w, out, out_size, ld_out, std::forward<Executor>(exec), path, policy);
}

/// Dequantizes into a new rows x cols float buffer (ld = cols).
template <class Scheme, class Executor = serial_executor, detail::enable_if_executor<Executor> = 0>
aligned_buffer<float> dequantize(const quantized_view<Scheme>& w, Executor&& exec = Executor{},
                                 isa path = best_isa()) {
  w.validate();
  aligned_buffer<float> out(w.rows() * w.cols());
  dequantize(w, out.data(), out.size(), w.cols(), std::forward<Executor>(exec), path);
  return out;
}

}  // namespace lowbit
