/// \file
/// \brief cuda::gemm for M > 64 on sm_90a: dense wgmma.mma_async (the warpgroup tensor-core
/// instruction) with the weights dequantized in registers straight into its A operand, over the same
/// packed layout as the mma.sync kernels (packed_weights.cuh; included from gemm_large.cuh).
///
/// y = x Wᵀ with W as A (its rows are the instruction's M) and x as B (tokens are N, K contiguous).
/// A block is 2 warpgroups (8 warps): 128 weight rows (8 tiles: warp w dequantizes tile w, which is
/// rows 16 (w % 4) .. + 15 of its warpgroup's 64) by BN = 128 or 256 tokens (64 for M = 33..64, two
/// blocks an SM), one wgmma m64nBNk16 a
/// 16-wide k step, fp32 sums in registers (BN / 2 a thread). A comes from registers: PTX gives warp
/// j of the warpgroup rows 16 j .. 16 j + 15 in the mma.m16n8k16 A-fragment layout, and B (x) is read
/// from shared memory in its natural k order (128-byte rows, the 128-byte swizzle, as the 2:4 wgmma
/// kernel). The pack, though, gives lane (g, t) of a tile the 16 k 16 t .. 16 t + 15 of a chunk
/// (mma.sync reads x in the same permuted order from registers); the k step s of the wgmma needs
/// the k pairs at position t of the chunk's 8-k pieces 2 s and 2 s + 1, which lane (g, s) holds.
/// So the stage stores lane L's code vectors at slot 8 (L % 4) + L / 4 (conflict-free below), and
/// for step s lane (g, t) reads 2 words of lane (g, s)'s vector (4-bit: words t / 2 and 2 + t / 2,
/// joined into one word of the dequantizer's layout by one prmt; 8-bit: word t of each of its 2
/// vectors, already in the layout) and dequantizes them with gemm_common.cuh's dequant.
/// The scale is folded into the weights (one multiply a register pair; FP4 / FP8 in fp16 two: the
/// unit power of two first, so that nothing overflows or underflows): one more fp16 / bf16
/// rounding of each weight than the mma.sync kernels (whose fp32 group sums are scaled), inside
/// the tests' tolerance. MXFP4 (E8M0 scales that fp16 cannot hold) stays on gemm_large_kernel.
/// The ring: Stages stages of one chunk (x, the 8 tiles' code vectors, their 128 scale words): x by
/// TMA from thread 0 onto the stage's mbarrier (no per-thread address work, and no proxy fence: the
/// copy engine writes in the async proxy that wgmma reads in), the weights and scales by cp.async
/// from all 256 threads (read with ld.shared; the scale group advanced by a count-down, no division).
/// A chunk waits for its cp.async group and its mbarrier and barriers; then for each of its 4 k
/// steps: the A fragment (4 register buffers), one wgmma, commit, and a wait for all but the last 3
/// groups (so each step's dequantization and the chunk's barrier run while 3 wgmmas are in flight);
/// after the chunk's first wgmma it refills the stage two chunks back. The 256-token blocks (never
/// split) stage their sums through the idle ring and store 16 bytes a thread (stage_wgmma_sums,
/// store_staged_sums: as the 2:4 wgmma kernels); 64 / 128 end in wide_store (split K).
/// The kernel's body exists only where compiled for sm_90a; the host takes this path only when the
/// loaded code has it (wgmma_usable), the driver has the tensor-map encoder, and options.warps is 0
/// (8 / 16 pick gemm_large_kernel).
#pragma once

#include <cstddef>
#include <cstdint>

#include "gemm_common.cuh"
#include "wgmma_common.cuh"

namespace lowbit {
namespace cuda {
namespace detail {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/// D(64 x 64, fp32) += A(64 x 16, registers: each warp 16 rows in the mma.m16n8k16 fragment layout)
/// * B(64 x 16 K-major, shared memory, descriptor), fp16 (BF16: bf16).
template <bool BF16>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[8][1][4], const uint32_t (&a)[4], uint64_t desc) {
  LOWBIT_WGMMA(BF16, "wgmma.mma_async.sync.aligned.m64n64k16", LOWBIT_WGMMA_R32, "{%32, %33, %34, %35}, %36", "%37",
               LOWBIT_WGMMA_D64, d, LOWBIT_WGMMA_A(a), "l"(desc));
}

/// D(64 x 128, fp32) += A(64 x 16, registers: each warp 16 rows in the mma.m16n8k16 fragment layout)
/// * B(128 x 16 K-major, shared memory, descriptor), fp16 (BF16: bf16).
template <bool BF16>
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[16][1][4], const uint32_t (&a)[4], uint64_t desc) {
  LOWBIT_WGMMA(BF16, "wgmma.mma_async.sync.aligned.m64n128k16", LOWBIT_WGMMA_R64, "{%64, %65, %66, %67}, %68", "%69",
               LOWBIT_WGMMA_D128, d, LOWBIT_WGMMA_A(a), "l"(desc));
}

/// D(64 x 256, fp32) += A(64 x 16, registers: each warp 16 rows in the mma.m16n8k16 fragment layout)
/// * B(256 x 16 K-major, shared memory, descriptor), fp16 (BF16: bf16).
template <bool BF16>
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[32][1][4], const uint32_t (&a)[4], uint64_t desc) {
  LOWBIT_WGMMA(BF16, "wgmma.mma_async.sync.aligned.m64n256k16", LOWBIT_WGMMA_R128, "{%128, %129, %130, %131}, %132", "%133",
               LOWBIT_WGMMA_D256, d, LOWBIT_WGMMA_A(a), "l"(desc));
}

template <int BN, bool BF16>
__device__ __forceinline__ void wgmma_dense(float (&d)[BN / 8][1][4], const uint32_t (&a)[4], uint64_t desc) {
  if constexpr (BN == 256) wgmma_m64n256k16<BF16>(d, a, desc);
  else if constexpr (BN == 128) wgmma_m64n128k16<BF16>(d, a, desc);
  else wgmma_m64n64k16<BF16>(d, a, desc);
}

__device__ __forceinline__ uint32_t lds32(unsigned at) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(at));
  return v;
}

/// a *= s, two fp16 (BF16: bf16) at a time.
template <bool BF16>
__device__ __forceinline__ uint32_t mul_pair(uint32_t a, uint32_t s) {
  uint32_t d;
  if constexpr (BF16) asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(s));
  else asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(s));
  return d;
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

/// The ring: the table (codebook formats, 32 KB), then Stages stages (1024-byte aligned) of BN x
/// 128 bytes of x, 8 tiles x Bits / 4 x 32 code vectors, 128 scale words; then a full barrier a
/// stage (x by TMA); 1 KB more for aligning.
template <int Bits, dequant_kind Kind, int BN, int Stages>
struct gemm_wgmma_layout {
  static constexpr unsigned table_bytes = Kind == dequant_kind::table ? 256u * 32u * 4u : 0u;
  static constexpr unsigned x_bytes = BN * 128u, code_bytes = 8u * (Bits / 4) * 32u * 16u, scale_bytes = 8u * 16u * 4u;
  static constexpr unsigned stage_bytes = (x_bytes + code_bytes + scale_bytes + 1023u) / 1024u * 1024u;
  static constexpr unsigned barriers_at = Stages * stage_bytes;  // from the ring's start
  static constexpr std::size_t bytes = table_bytes + std::size_t(Stages) * stage_bytes + 8u * Stages + 1024u;
  static_assert(bytes <= 227u * 1024u, "gemm_wgmma: a ring that does not fit shared memory");
};

/// x comes by TMA (thread 0; the tensor map x_map: K x m, 64 x BN boxes in the 128-byte swizzle,
/// zeros past K and m) onto the stage's full barrier: the wgmmas read what the async proxy wrote,
/// so no proxy fence is needed (the weights and scales, read by ld.shared, stay on cp.async).
template <class T, int Bits, dequant_kind Kind, int BN, int Stages>
__global__ void __launch_bounds__(256, BN == 64 ? 2 : 1)
    gemm_wgmma_kernel(const __grid_constant__ CUtensorMap x_map, int m, const ::uint4* __restrict__ codes,
                      const uint32_t* __restrict__ scales, code_table table, int n, int tiles, int chunks,
                      int chunks_per_group, int groups, int blocks_n, int split_chunks, float* __restrict__ partials,
                      unsigned* __restrict__ counters, T* __restrict__ y, int ldy) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(BN == 64 || BN == 128 || BN == 256, "gemm_wgmma_kernel: 64, 128 or 256 tokens a block");
  static_assert(Stages >= 3, "gemm_wgmma_kernel: a stage in use, one in flight, one refilled");
  static_assert(Kind != dequant_kind::mxfp4, "gemm_wgmma_kernel: MXFP4 takes gemm_large_kernel");
  using layout = gemm_wgmma_layout<Bits, Kind, BN, Stages>;
  constexpr bool bf16 = is_bf16<T>;
  constexpr int vecs = Bits / 4;
  constexpr int pending = 3;  // wgmma groups left in flight at each wait (one A buffer each, and one being made)
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  constexpr int column = 8;  // weight blocks a column of the block order (as the 2:4 wgmma kernel)
  const int blocks_m = static_cast<int>(gridDim.x) / blocks_n, b = static_cast<int>(blockIdx.x);
  const int col = b / (column * blocks_m), within = b - col * column * blocks_m;
  const int width = min(column, blocks_n - col * column);
  const int nb = col * column + within % width, mb = within / width;
  const int tile0 = nb * 8, m0 = mb * BN;
  const int c0 = blockIdx.y * split_chunks, steps = min(chunks - c0, split_chunks);

  uint32_t* table_smem = reinterpret_cast<uint32_t*>(smem);
  const unsigned ring = (static_cast<unsigned>(__cvta_generic_to_shared(smem)) + layout::table_bytes + 1023u) & ~1023u;
  const unsigned full = ring + layout::barriers_at;  // stage j's barrier at full + 8 j
  if (threadIdx.x == 0) {
    for (int j = 0; j < Stages; ++j) mbar_init(full + 8u * j, 1);  // thread 0's expect_tx
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();  // the barriers exist before any copy completes on them or anyone waits
  // Codes: thread copies vectors threadIdx.x + 256 i: tile tl, vector v, lane L, stored at slot
  // 8 (L % 4) + L / 4 of its tile and vector (tiles past the matrix read the last tile).
  const ::uint4* code_src[vecs];
  unsigned code_dst[vecs];
#pragma unroll
  for (int i = 0; i < vecs; ++i) {
    const int idx = threadIdx.x + 256 * i, tl = idx / (32 * vecs), v = idx / 32 % vecs, l = idx & 31;
    code_src[i] = codes + ((std::size_t)min(tile0 + tl, tiles - 1) * chunks + c0) * vecs * 32 + v * 32 + l;
    code_dst[i] = layout::x_bytes + ((tl * vecs + v) * 32 + 8 * (l & 3) + (l >> 2)) * 16u;
  }
  // Scales: threads 0..31 copy quarter threadIdx.x % 4 of tile threadIdx.x / 4's 16 words; the
  // group advances by a count-down (no division a chunk).
  const ::uint4* scale_src = reinterpret_cast<const ::uint4*>(scales) +
                             ((std::size_t)min(tile0 + static_cast<int>(threadIdx.x >> 2) % 8, tiles - 1) * groups + c0 / chunks_per_group) * 4 +
                             (threadIdx.x & 3);
  int group_left = chunks_per_group - c0 % chunks_per_group;  // chunks of scale_src's group still to copy
  const auto issue = [&](int step) {  // always commits a group (empty past the end)
    if (step < steps) {
      const int c = c0 + step, slot = step % Stages;
      const unsigned stage = ring + static_cast<unsigned>(slot) * layout::stage_bytes;
      if (threadIdx.x == 0) {  // x: rows past m and k past K are zeros (the padded codes decode to -zero, not 0)
        mbar_expect_tx(full + 8u * slot, layout::x_bytes);
        tma_load_2d(stage, &x_map, c * 64, m0, full + 8u * slot);
      }
#pragma unroll
      for (int i = 0; i < vecs; ++i) {
        cp_async16_at(stage + code_dst[i], code_src[i]);
        code_src[i] += vecs * 32;
      }
      if (threadIdx.x < 32) cp_async16_at(stage + layout::x_bytes + layout::code_bytes + threadIdx.x * 16u, scale_src);
      if (--group_left == 0) group_left = chunks_per_group, scale_src += 4;
    }
    cp_async_commit();
  };

#pragma unroll
  for (int s = 0; s < Stages - 2; ++s) issue(s);
  if constexpr (Kind == dequant_kind::table) fill_table<256>(table_smem, table);  // the loop's first barrier
  const uint32_t* lane_table = table_smem + lane;
  float acc[BN / 8][1][4];
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) acc[j][0][0] = acc[j][0][1] = acc[j][0][2] = acc[j][0][3] = 0.0f;
  uint32_t a[pending + 1][4] = {};  // [buffer = k step]
  // This lane's reads in a stage: step s's words of lane (g, s) (slot 8 s + g): 4-bit words t / 2
  // and 2 + t / 2 (banks 4 g + t / 2: conflict-free), joined by `join`; 8-bit word t of both vectors.
  const unsigned word_at = layout::x_bytes + (warp * vecs * 32 + g) * 16u + (Bits == 8 ? 4u * t : 4u * (t >> 1));
  const unsigned scale_at = layout::x_bytes + layout::code_bytes + (warp * 16 + g) * 4u;
  const unsigned q = t & 1;
  const uint32_t join = Kind == dequant_kind::table ? (2 * q) | (2 * q + 1) << 4 | (4 + 2 * q) << 8 | (5 + 2 * q) << 12
                                                    : q | (4 + q) << 4 | (2 + q) << 8 | (6 + q) << 12;
  constexpr bool unit_first = !bf16 && (Kind == dequant_kind::e2m1 || Kind == dequant_kind::e4m3);
  constexpr uint32_t unit2 = Kind == dequant_kind::e2m1 ? 0x74007400u : 0x5c005c00u;  // fp16 2^14, 2^8

  for (int step = 0; step < steps; ++step) {
    const int slot = step % Stages;
    cp_async_wait<Stages - 3>();
    mbar_wait(full + 8u * slot, static_cast<unsigned>(step / Stages) & 1u);
    __syncthreads();  // the weights came from every thread; the stage refilled next is done with (step - 2)
    const unsigned stage = ring + static_cast<unsigned>(slot) * layout::stage_bytes;
    uint32_t words[4][2];
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      words[s][0] = lds32(stage + word_at + s * 128u);
      words[s][1] = lds32(stage + word_at + (Bits == 8 ? 512u : 8u) + s * 128u);
    }
    const uint32_t sc_g = lds32(stage + scale_at), sc_g8 = lds32(stage + scale_at + 32u);
    uint32_t bias_g, bias_g8;
    dequant_biases<Bits, Kind, bf16>(sc_g, sc_g8, bias_g, bias_g8);
    // The rows' factors: the fp16 scale (bf16: the scale times the unit, rounded to bf16).
    const uint32_t s_g = bf16 ? bf16x2_bits(group_scale<Kind>(sc_g)) : __byte_perm(sc_g, 0, 0x1010);
    const uint32_t s_g8 = bf16 ? bf16x2_bits(group_scale<Kind>(sc_g8)) : __byte_perm(sc_g8, 0, 0x1010);
    const uint64_t desc = sw128_descriptor(stage);
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int buf = s % (pending + 1);
      uint32_t word[2] = {words[s][0], words[s][1]};
      if constexpr (Bits == 4) word[0] = prmt(words[s][0], words[s][1], join);
      dequant<Bits, Kind, bf16>(a[buf], word, 0, bias_g, bias_g8, lane_table);
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        if constexpr (unit_first) a[buf][p] = mul_pair<false>(a[buf][p], unit2);
        a[buf][p] = mul_pair<bf16>(a[buf][p], p & 1 ? s_g8 : s_g);
      }
      wgmma_fence();
      wgmma_dense<BN, bf16>(acc, a[buf], desc + 2 * s);  // k step s: 32 bytes into the rows
      wgmma_commit();
      wgmma_wait<pending>();  // step s - 3's wgmma is done: its registers are free for step s + 1
#pragma unroll
      for (int p = 0; p < 4; ++p) fence_register(a[(s + 1) % (pending + 1)][p]);
      if (s == 0) issue(step + Stages - 2);  // after the chunk's first wgmma: the tensor pipe is fed first
    }
  }
  wgmma_wait<0>();
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) fence_register(acc[j][0][i]);
  cp_async_wait<0>();
  if constexpr (BN == 256) {  // never split (the host's choice): staged through the idle ring, 16 bytes a store
    static_assert(Stages * layout::stage_bytes >= BN * 256u, "gemm_wgmma_kernel: the ring holds the staged outputs");
    __syncthreads();      // both warpgroups' wgmmas are done with the ring
    fence_proxy_async();  // it was last written by TMA and read by wgmma (async proxy)
    stage_wgmma_sums<BN / 8, T>(acc, ring, 0, warp, lane);
    __syncthreads();
    const bool vec = (reinterpret_cast<std::uintptr_t>(y) & 15u) == 0 && ldy % 8 == 0;
    store_staged_sums<BN>(ring, tile0 * 16, m0, n, m, y, ldy, vec);
  } else {
    wide_store<BN / 8, 1, 8>(acc, partials, counters, warp, lane, tile0 + warp, n, m, y, ldy, m0);
  }
#else
  (void)x_map, (void)m, (void)codes, (void)scales, (void)table, (void)n, (void)tiles, (void)chunks;
  (void)chunks_per_group, (void)groups, (void)blocks_n, (void)split_chunks, (void)partials, (void)counters, (void)y, (void)ldy;
#endif
}

/// The tensor map of x: K x m elements (rows ldx apart), 64 x BN boxes in the 128-byte swizzle.
template <int BN, class T>
CUtensorMap gemm_wgmma_x_map(const T* x, int m, int k, int ldx) {
  CUtensorMap map{};
  const CUresult made = encode_x_map(map, x, k, m, ldx, BN);
  LOWBIT_CHECK(made != CUDA_ERROR_NOT_FOUND, "cuda::gemm: no cuTensorMapEncodeTiled in the driver");
  LOWBIT_CHECK(made == CUDA_SUCCESS, "cuda::gemm: the tensor map of x (K=" << k << ", m=" << m << ", ldx=" << ldx
                                                                       << ") was refused (CUresult " << made << ")");
  return map;
}

/// M > 64 (BN = 128, 256) or 33..64 (BN = 64) on sm_90a with BN tokens a block; K split (BN = 64,
/// 128) as options.split_k says, by default when the output blocks are fewer than the SMs: one
/// block an SM (with x by TMA one beat the two that BN = 64's register budget allows; H100, M = 64,
/// 8192²: 2 splits 32.9 us, 4 splits 39.5; 4096 x 14336: 4 splits 30.4, 8 splits 36.6).
template <int BN, int Stages, class Scheme, class T>
void gemm_wgmma_with(const T* x, int m, int ldx, const packed_view<Scheme>& w, T* y, int ldy, cudaStream_t stream,
                     const gemm_options& options) {
  constexpr int bits = Scheme::bits;
  constexpr dequant_kind kind = gpu_scheme<Scheme>::kind;
  const int chunks = static_cast<int>(w.chunks);
  const std::size_t blocks_n = (w.tiles() + 7) / 8;
  const std::size_t blocks_m = (static_cast<std::size_t>(m) + BN - 1) / BN;
  LOWBIT_CHECK(blocks_n * blocks_m < (std::size_t(1) << 31), "cuda::gemm: m=" << m << " by N=" << w.rows << " is too many blocks");
  const CUtensorMap map = gemm_wgmma_x_map<BN>(x, m, static_cast<int>(w.cols), ldx);
  const int blocks = static_cast<int>(blocks_n * blocks_m);
  gemm_options split_options = options;
  if (BN == 256) split_options.split_k = 1;  // its 128 sums a thread leave no room for the split-K reduction
  const wide_split split("cuda::gemm", chunks, blocks, 1, std::size_t(128) * BN, split_options, stream);
  using layout = gemm_wgmma_layout<bits, kind, BN, Stages>;
  constexpr auto kernel = gemm_wgmma_kernel<T, bits, kind, BN, Stages>;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(layout::bytes)));
  kernel<<<dim3(blocks, split.splits), 256, layout::bytes, stream>>>(
      map, m, w.codes, w.scales, w.table[is_bf16<T>], static_cast<int>(w.rows), static_cast<int>(w.tiles()), chunks,
      static_cast<int>(w.chunks_per_group), static_cast<int>(w.groups), static_cast<int>(blocks_n), split.split_chunks,
      split.partials, split.counters, y, ldy);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

/// Whether gemm_large takes the wgmma kernel for this scheme (not MXFP4) on the current device.
template <class Scheme>
bool gemm_wgmma_takes(const gemm_options& options) {
  return gpu_scheme<Scheme>::kind != dequant_kind::mxfp4 && options.warps == 0 && wgmma_usable() &&
         driver_tensor_map_encoder() != nullptr;
}

/// The default: 256 or 128 tokens a block, whichever takes fewer waves of blocks over the SMs
/// times the block's tokens (a 256-token block counted as 0.85 of two 128-token ones: measured
/// ~15% faster per token on an H100); 128 (K split when its blocks are fewer than the SMs) where
/// split_k asks for a split.
template <class Scheme, class T>
void gemm_wgmma(const T* x, int m, int ldx, const packed_view<Scheme>& w, T* y, int ldy, cudaStream_t stream,
                const gemm_options& options) {
  const std::size_t blocks_n = (w.tiles() + 7) / 8, sms = static_cast<std::size_t>(sm_count());
  const std::size_t waves_256 = (blocks_n * ((static_cast<std::size_t>(m) + 255) / 256) + sms - 1) / sms;
  const std::size_t waves_128 = (blocks_n * ((static_cast<std::size_t>(m) + 127) / 128) + sms - 1) / sms;
  if (options.split_k <= 1 && 256 * 85 * waves_256 < 128 * 100 * waves_128)
    gemm_wgmma_with<256, 5>(x, m, ldx, w, y, ldy, stream, options);
  else
    gemm_wgmma_with<128, 6>(x, m, ldx, w, y, ldy, stream, options);
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
