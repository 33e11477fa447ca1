// The peers that lowbit's benchmarks run beside its kernels, in the same binary: OpenBLAS (sgemm,
// sgemv on fp32 weights) and oneDNN matmul (f32, and u8 x s8 -> s32 with VNNI), both from
// Debian's packages. Each peer computes y[M x N] = x[M x K] * W^T for W stored N x K row-major,
// with its weights prepacked once outside the timed loop, as an engine would hold them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif
#if defined(LOWBIT_BENCH_HAVE_DNNL)
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace peers {

#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
/// OpenBLAS on fp32 weights: sgemv for M = 1, sgemm otherwise.
struct openblas_linear {
  std::size_t m, n, k;
  const float* w;
  openblas_linear(std::size_t m_, std::size_t n_, std::size_t k_, const float* weights, int threads)
      : m(m_), n(n_), k(k_), w(weights) {
    openblas_set_num_threads(threads);
  }
  void run(const float* x, float* y) const {
    const int N = static_cast<int>(n), K = static_cast<int>(k), M = static_cast<int>(m);
    if (m == 1)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, w, K, x, 1, 0.0f, y, 1);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
  }
};
#endif

#if defined(LOWBIT_BENCH_HAVE_DNNL)
/// oneDNN matmul with weights reordered once into its preferred (blocked) layout.
/// kind f32: x f32, W f32, y f32. kind u8s8: x u8, W s8, y s32 (the VNNI integer path).
class onednn_linear {
 public:
  enum class kind { f32, u8s8 };
  onednn_linear(kind what, std::size_t m, std::size_t n, std::size_t k, const void* weights_nk, int threads)
      : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {
    omp_set_num_threads(threads);
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dt src_type = what == kind::f32 ? dt::f32 : dt::u8;
    const dt wei_type = what == kind::f32 ? dt::f32 : dt::s8;
    const dt dst_type = what == kind::f32 ? dt::f32 : dt::s32;
    const dnnl::memory::dim M = static_cast<dnnl::memory::dim>(m), N = static_cast<dnnl::memory::dim>(n),
                            K = static_cast<dnnl::memory::dim>(k);
    dnnl::memory::desc src_md({M, K}, src_type, tag::ab);
    dnnl::memory::desc wei_any({K, N}, wei_type, tag::any);
    dnnl::memory::desc dst_md({M, N}, dst_type, tag::ab);
    dnnl::matmul::desc desc(src_md, wei_any, dst_md);
    pd_ = dnnl::matmul::primitive_desc(desc, engine_);
    matmul_ = dnnl::matmul(pd_);
    // W is N x K row-major, i.e. the K x N logical weights in format "ba".
    dnnl::memory user_weights({{K, N}, wei_type, tag::ba}, engine_, const_cast<void*>(weights_nk));
    weights_ = dnnl::memory(pd_.weights_desc(), engine_);
    dnnl::reorder(user_weights, weights_).execute(stream_, user_weights, weights_);
    stream_.wait();
    src_md_ = src_md;
    dst_md_ = dst_md;
  }
  void run(const void* x, void* y) {
    dnnl::memory src(src_md_, engine_, const_cast<void*>(x));
    dnnl::memory dst(dst_md_, engine_, y);
    matmul_.execute(stream_, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights_}, {DNNL_ARG_DST, dst}});
    stream_.wait();
  }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  dnnl::matmul::primitive_desc pd_;
  dnnl::matmul matmul_;
  dnnl::memory weights_;
  dnnl::memory::desc src_md_, dst_md_;
};
#endif

}  // namespace peers
