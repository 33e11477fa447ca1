/// \file
/// \brief The sm_90a helpers that the warpgroup (wgmma) kernels share: the dense weight-only GEMM
/// (gemm_wgmma.cuh) and the 2:4 one (sparse24_gemm_wgmma.cuh): wgmma fences and waits, the
/// 128-byte-swizzle matrix descriptor, mbarriers, cluster sync, TMA loads (multicast too) and the
/// tensor-map encoder, the direct store of a warpgroup's sums, and the host's check that the loaded
/// code has sm_90a.
/// The device helpers exist only where compiled for sm_90a (__CUDA_ARCH_FEAT_SM90_ALL).
#pragma once

#include <cuda.h>  // CUtensorMap (the type only: the encoder is found through the runtime)
#include <cudaTypedefs.h>

#include <atomic>
#include <cstdint>
#include <utility>

#include "gemm_common.cuh"

namespace lowbit {
namespace cuda {
namespace detail {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/// The fp32 accumulators of an m64nN wgmma as asm operands (d: float [N / 8][1][4]; N = 64: 32
/// registers a thread, 128: 64, 256: 128) and their operand numbers "%0, %1, ..." for the instruction text.
#define LOWBIT_WGMMA_D4(d, i) "+f"(d[i][0][0]), "+f"(d[i][0][1]), "+f"(d[i][0][2]), "+f"(d[i][0][3])
#define LOWBIT_WGMMA_D64(d) \
  LOWBIT_WGMMA_D4(d, 0), LOWBIT_WGMMA_D4(d, 1), LOWBIT_WGMMA_D4(d, 2), LOWBIT_WGMMA_D4(d, 3), \
  LOWBIT_WGMMA_D4(d, 4), LOWBIT_WGMMA_D4(d, 5), LOWBIT_WGMMA_D4(d, 6), LOWBIT_WGMMA_D4(d, 7)
#define LOWBIT_WGMMA_D128(d) \
  LOWBIT_WGMMA_D64(d), \
  LOWBIT_WGMMA_D4(d, 8), LOWBIT_WGMMA_D4(d, 9), LOWBIT_WGMMA_D4(d, 10), LOWBIT_WGMMA_D4(d, 11), \
  LOWBIT_WGMMA_D4(d, 12), LOWBIT_WGMMA_D4(d, 13), LOWBIT_WGMMA_D4(d, 14), LOWBIT_WGMMA_D4(d, 15)
#define LOWBIT_WGMMA_D256(d) \
  LOWBIT_WGMMA_D128(d), \
  LOWBIT_WGMMA_D4(d, 16), LOWBIT_WGMMA_D4(d, 17), LOWBIT_WGMMA_D4(d, 18), LOWBIT_WGMMA_D4(d, 19), \
  LOWBIT_WGMMA_D4(d, 20), LOWBIT_WGMMA_D4(d, 21), LOWBIT_WGMMA_D4(d, 22), LOWBIT_WGMMA_D4(d, 23), \
  LOWBIT_WGMMA_D4(d, 24), LOWBIT_WGMMA_D4(d, 25), LOWBIT_WGMMA_D4(d, 26), LOWBIT_WGMMA_D4(d, 27), \
  LOWBIT_WGMMA_D4(d, 28), LOWBIT_WGMMA_D4(d, 29), LOWBIT_WGMMA_D4(d, 30), LOWBIT_WGMMA_D4(d, 31)
#define LOWBIT_WGMMA_R32 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define LOWBIT_WGMMA_R64 \
  LOWBIT_WGMMA_R32 ", " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define LOWBIT_WGMMA_R128 \
  LOWBIT_WGMMA_R64 ", " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
/// One wgmma (dense or .sp) with fp32 accumulators and A from registers, fp16 or bf16 (BF16, a
/// constant): INSTR is the instruction up to its types, REGS the accumulators' operand numbers and
/// ACC(d) their operands (the macros above, named without arguments so that their commas survive),
/// REST the operand text after them (A, B's descriptor[, metadata, selector]), PRED the operand
/// number of the scale-d predicate (an immediate 1: accumulate); the inputs follow.
#define LOWBIT_WGMMA_ASM(INSTR, TY, REGS, REST, PRED, ACC, d, ...) \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n" INSTR ".f32." TY "." TY " {" REGS "}, " REST \
               ", p, 1, 1, 0;\n}\n" : ACC(d) : __VA_ARGS__, "n"(1) : "memory")
#define LOWBIT_WGMMA(BF16, INSTR, REGS, REST, PRED, ACC, d, ...) \
  if constexpr (BF16) LOWBIT_WGMMA_ASM(INSTR, "bf16", REGS, REST, PRED, ACC, d, __VA_ARGS__); \
  else LOWBIT_WGMMA_ASM(INSTR, "f16", REGS, REST, PRED, ACC, d, __VA_ARGS__)
#define LOWBIT_WGMMA_A(a) "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3])

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(Pending) : "memory");
}
/// Makes this thread's completed shared-memory writes (cp.async) visible to the async proxy (wgmma).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
/// Keeps a register's value where it is until here (registers an in-flight wgmma reads or writes).
__device__ __forceinline__ void fence_register(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ __forceinline__ void fence_register(float& r) { asm volatile("" : "+f"(r)::"memory"); }

/// Matrix descriptor of a K-major operand in the 128-byte swizzle at shared address `at`: start
/// address / 16, leading byte offset unused (1), stride byte offset 1024 (8-row groups), layout 1.
__device__ __forceinline__ uint64_t sw128_descriptor(unsigned at) {
  return static_cast<uint64_t>((at & 0x3ffffu) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

/// Calls f(std::integral_constant<int, I>{}) for I = 0, 1, ... while it returns true (unrolled:
/// each call sees its I as a constant); false where one returned false.
template <class F, int... I>
__device__ __forceinline__ bool unrolled_while(F&& f, std::integer_sequence<int, I...>) {
  return (f(std::integral_constant<int, I>{}) && ...);
}

/// mbarrier helpers (shared addresses of this CTA; a remote arrive goes through map_to_rank).
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
/// The shared::cluster address of `bar` (this CTA's) in the CTA of rank `rank`, for mbar_arrive_at.
__device__ __forceinline__ unsigned map_to_rank(unsigned bar, unsigned rank) {
  unsigned r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(bar), "r"(rank));
  return r;
}
/// mbarrier arrive at a shared::cluster address (map_to_rank's, of this CTA or another of the cluster).
__device__ __forceinline__ void mbar_arrive_at(unsigned cluster_bar) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(cluster_bar) : "memory");
}
/// Waits for the phase of `parity` to complete (default semantics, as CUTLASS's cluster barriers).
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}" ::"r"(bar),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
/// A float to shared::cluster address `remote` (map_to_rank's), counted (4 bytes) on the mbarrier
/// at `remote_bar` of the same block (st.async: no fence; the receiver waits on its mbarrier).
__device__ __forceinline__ void st_async_f32(unsigned remote, float v, unsigned remote_bar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];" ::"r"(remote), "r"(__float_as_uint(v)),
               "r"(remote_bar)
               : "memory");
}
/// The cluster barrier in two halves, without a memory fence (arrive relaxed).
__device__ __forceinline__ void cluster_arrive_relaxed() { asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); }
__device__ __forceinline__ unsigned cluster_rank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
/// A 2D TMA copy of box (k, row) of `map` to this CTA's `dst`, completing on `bar`.
__device__ __forceinline__ void tma_load_2d(unsigned dst, const CUtensorMap* map, int k, int row, unsigned bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k), "r"(row), "r"(bar)
      : "memory");
}
/// A 2D TMA copy of box (k, row) of `map` to `dst` in every CTA of `mask`, completing on `bar` (the
/// same offset in each).
__device__ __forceinline__ void tma_multicast(unsigned dst, const CUtensorMap* map, int k, int row, unsigned bar,
                                              uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k), "r"(row), "r"(bar), "h"(mask)
      : "memory");
}

/// Value v of a warp's wgmma sums (acc[v / 4][0][v % 4]: weight row row0 + g + 8 (v % 4 / 2), token
/// tok0 + 8 (v / 4) + 2 t + v % 2) stored to y, clipped at n rows and m tokens.
template <class T>
__device__ __forceinline__ void store_wgmma_value(float sum, int v, int row0, int tok0, int g, int t, int n, int m, T* y,
                                                  int ldy) {
  const int row = row0 + g + 8 * ((v & 3) >> 1), tok = tok0 + (v >> 2) * 8 + 2 * t + (v & 1);
  if (row < n && tok < m) {
    if constexpr (is_bf16<T>) y[(size_t)tok * ldy + row] = __float2bfloat16(sum);
    else y[(size_t)tok * ldy + row] = __float2half(sum);
  }
}

/// Two fp32 sums as one register of two fp16 / bf16 (the first in the low half).
template <class T>
__device__ __forceinline__ uint32_t pack_sums(float lo, float hi) {
  uint32_t r;
  if constexpr (is_bf16<T>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    r = *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    r = *reinterpret_cast<const uint32_t*>(&v);
  }
  return r;
}

/// A warp's sums of tokens 8 j .. 8 j + 8 J - 1 of the block (rows 16 warp .. + 15 of its 128), as
/// T, into the staging area at shared `stage`: a 256-byte row a token (the block's 128 weight rows),
/// 16-byte piece p of token row r at r * 256 + ((p ^ r % 8) * 16) (no bank conflicts on either
/// side). stmatrix .trans writes each 8 x 8 fragment (rows g, tokens 2t, 2t + 1 a lane) as 8
/// token rows of 8 weight rows: 2 x 8 fragments (J = 2) an instruction.
template <int J, class T>
__device__ __forceinline__ void stage_wgmma_sums(const float (&acc)[J][1][4], unsigned stage, int tok0, int warp, int lane) {
  static_assert(J % 2 == 0, "stage_wgmma_sums: fragments in pairs");
  const int q = lane >> 3;
#pragma unroll
  for (int j = 0; j < J; j += 2) {
    const uint32_t r0 = pack_sums<T>(acc[j][0][0], acc[j][0][1]), r1 = pack_sums<T>(acc[j][0][2], acc[j][0][3]);
    const uint32_t r2 = pack_sums<T>(acc[j + 1][0][0], acc[j + 1][0][1]), r3 = pack_sums<T>(acc[j + 1][0][2], acc[j + 1][0][3]);
    const int tok = tok0 + (j + (q >> 1)) * 8 + (lane & 7), piece = warp * 2 + (q & 1);  // lane's row of matrix q
    const unsigned at = stage + static_cast<unsigned>(tok * 256 + ((piece ^ (tok & 7)) << 4));
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(at), "r"(r0), "r"(r1),
                 "r"(r2), "r"(r3)
                 : "memory");
  }
}

/// The staging area's BN tokens (stage_wgmma_sums) to y: 16 consecutive threads a token row, a
/// 16-byte store each (8 weight rows from row0) where the 8 rows are inside n and y is 16-byte
/// aligned for it (vec), else element by element inside n; tokens past m are not stored. After a
/// barrier (the staging written by every warp); called by every thread of the block.
template <int BN, class T>
__device__ __forceinline__ void store_staged_sums(unsigned stage, int row0, int tok0, int n, int m, T* __restrict__ y,
                                                  int ldy, bool vec) {
  const int p = threadIdx.x & 15, row = row0 + p * 8;
#pragma unroll 4
  for (int r = static_cast<int>(threadIdx.x >> 4); r < BN; r += 16) {
    const int tok = tok0 + r;
    if (tok >= m) break;  // r grows
    uint32_t v[4];
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
                 : "r"(stage + static_cast<unsigned>(r * 256 + ((p ^ (r & 7)) << 4))));
    T* out = y + (size_t)tok * ldy + row;
    if (vec && row + 8 <= n) {
      *reinterpret_cast<::uint4*>(out) = make_uint4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (row + e < n) reinterpret_cast<unsigned short*>(out)[e] = static_cast<unsigned short>(v[e >> 1] >> (16 * (e & 1)));
    }
  }
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

/// cuTensorMapEncodeTiled through the runtime (no link to the driver library); null if missing.
inline PFN_cuTensorMapEncodeTiled_v12000 driver_tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      fn = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

/// The tensor map of x (K x m elements, rows ldx apart) in boxes of 64 elements x box_rows rows,
/// 128-byte swizzled as the wgmma B operand reads them; zeros past K and m. CUDA_ERROR_NOT_FOUND
/// where the driver has no encoder.
template <class T>
CUresult encode_x_map(CUtensorMap& map, const T* x, int k, int m, int ldx, int box_rows) {
  const auto encode = driver_tensor_map_encoder();
  if (!encode) return CUDA_ERROR_NOT_FOUND;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(m)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(ldx) * sizeof(T)};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(box_rows)}, element_strides[2] = {1, 1};
  return encode(&map, is_bf16<T> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<T*>(x),
                dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

/// Marks the code compiled for sm_90a: its static shared memory (1 KB) shows in the function's
/// attributes only where the loaded code for the device has the wgmma path.
template <int Unused = 0>
__global__ void wgmma_probe_kernel(int* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __shared__ int mark[256];
  mark[threadIdx.x & 255] = static_cast<int>(threadIdx.x);
  __syncthreads();
  if (out) *out = mark[(threadIdx.x + 1) & 255];
#else
  if (out) *out = 0;
#endif
}

/// Whether the current device runs the sm_90a (wgmma) kernels: code for sm_90a loaded; cached per device.
inline bool wgmma_usable() {
  static std::atomic<int> known[64];  // 0: not asked, 1: no, 2: yes
  int device = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= 64) return false;
  int state = known[device].load(std::memory_order_relaxed);
  if (state == 0) {
    cudaFuncAttributes attributes{};
    const cudaError_t e = cudaFuncGetAttributes(&attributes, wgmma_probe_kernel<0>);
    if (e != cudaSuccess) (void)cudaGetLastError();  // no code for this device: the mma.sync / mma.sp paths
    state = e == cudaSuccess && attributes.sharedSizeBytes >= 1024 ? 2 : 1;
    known[device].store(state, std::memory_order_relaxed);
  }
  return state == 2;
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
