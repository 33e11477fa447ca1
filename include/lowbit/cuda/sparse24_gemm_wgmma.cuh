/// \file
/// \brief cuda::gemm_sparse24 for M > 64 with plain fp16 / bf16 kept values on sm_90a:
/// wgmma.mma_async.sp (the warpgroup sparse tensor-core instruction) over the same packed layout as
/// the mma.sp kernels (sparse24_gemm.cuh; included from sparse24_gemm_large.cuh, not on its own).
///
/// y = x Wᵀ with W the sparse operand A (its rows are the instruction's M) and x the dense B (its
/// rows, tokens, are N; K contiguous: the K-major layout wgmma reads from shared memory). A block
/// is 2 warpgroups (8 warps) computing 128 weight rows x BN tokens (BN = 128 or 256): warpgroup w
/// multiplies rows 64 w .. 64 w + 63 (4 tiles of 16 rows, warp j of the warpgroup tile 4 w + j) by
/// all BN tokens, one wgmma m64nBNk32 a 32-wide k step, fp32 sums in registers (BN / 2 a thread).
/// A comes from registers: PTX gives each warp of the warpgroup 16 rows of A in the same fragment
/// and metadata layout as mma.sp.m16n8k32's (the metadata figure is that instruction's), so a
/// warp loads its tile's fragment and metadata words exactly as the mma.sp kernels do (the pack's
/// layout is unchanged). B comes from shared memory through a matrix descriptor: each stage holds
/// 64 dense k of BN tokens as 128-byte rows in the 128-byte swizzle (16-byte piece p of row r at
/// r * 128 + ((p ^ r % 8) * 16), 1024-byte aligned; 8-row groups 1024 bytes apart), written by
/// cp.async; the second 32-wide k step of a stage starts 64 bytes in.
/// The ring: Stages stages of half a chunk (64 dense k: x, then the 8 tiles' 2 fragment vectors a
/// lane and 16 metadata vectors), copied by all 256 threads. A step waits for its stage, fences the
/// copies for the async proxy, barriers, refills the stage two steps back (its wgmmas are done: each
/// step ends waiting for all but its own group), loads its A fragments (double-buffered in
/// registers across steps), and issues 2 wgmmas as one group. K split as the wide kernels split it
/// (BN = 128 only). Both kernels end in store_wgmma_split: the sums converted to fp16 / bf16 and
/// staged through the idle ring (stmatrix), then stored 16 bytes a thread (clipped at M and N).
/// At M > 128 the default is the clustered kernel (sparse24_wgmma_cluster_kernel: 2 blocks on
/// adjacent weight rows share x by TMA multicast, halving x's reads from L2; its shared memory holds
/// x alone, the weights go from global memory into registers a pair of chunks ahead; its loop body
/// unrolled over whole turns of the ring, so that a step's bookkeeping is constants), K split over blocks
/// where its 256-token blocks are fewer than the SMs (store_wgmma_split adds the splits); the
/// clustered kernel with 128 tokens is correct but slower, kept for the benchmark. (A variant with
/// every copy on the copy engine, 30-45% slower, was removed: docs/cuda-gemm-notes.md.)
/// The kernels' bodies exist only where compiled for sm_90a (__CUDA_ARCH_FEAT_SM90_ALL); the host
/// takes this path only when the loaded code for the current device has it (sparse24_wgmma_usable).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "wgmma_common.cuh"

namespace lowbit {
namespace cuda {
namespace detail {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

/// D(64 x 128, fp32) += A(64 x 32, 2:4, registers) * B(32 x 128, shared memory, descriptor), fp16 (BF16: bf16).
template <bool BF16>
__device__ __forceinline__ void wgmma_sp_m64n128k32(float (&d)[16][1][4], const uint32_t (&a)[4], uint64_t desc, uint32_t meta) {
  LOWBIT_WGMMA(BF16, "wgmma.mma_async.sp.sync.aligned.m64n128k32", LOWBIT_WGMMA_R64, "{%64, %65, %66, %67}, %68, %69, 0",
               "%70", LOWBIT_WGMMA_D128, d, LOWBIT_WGMMA_A(a), "l"(desc), "r"(meta));
}

/// D(64 x 256, fp32) += A(64 x 32, 2:4, registers) * B(32 x 256, shared memory, descriptor), fp16 (BF16: bf16).
template <bool BF16>
__device__ __forceinline__ void wgmma_sp_m64n256k32(float (&d)[32][1][4], const uint32_t (&a)[4], uint64_t desc, uint32_t meta) {
  LOWBIT_WGMMA(BF16, "wgmma.mma_async.sp.sync.aligned.m64n256k32", LOWBIT_WGMMA_R128,
               "{%128, %129, %130, %131}, %132, %133, 0", "%134", LOWBIT_WGMMA_D256, d, LOWBIT_WGMMA_A(a), "l"(desc), "r"(meta));
}

/// The 8 weight tiles' fragment vectors of k steps 2h, 2h + 1 (64 a tile) and metadata vectors
/// (16) of chunk c, copied by the block's 256 threads (cp.async) to shared `dst` (TileVecs a tile;
/// tiles past the last repeat it).
template <int TileVecs>
__device__ __forceinline__ void copy_stage_weights(unsigned dst, const ::uint4* codes, const ::uint4* metadata, int tile0,
                                                   int tiles, int chunks, int c, int h) {
  constexpr int threads = 256;
#pragma unroll
  for (int i = 0; i < (8 * TileVecs + threads - 1) / threads; ++i) {
    const int idx = threadIdx.x + i * threads;
    if (idx < 8 * TileVecs) {
      const int tl = idx / TileVecs, v = idx % TileVecs;
      const std::size_t tile = static_cast<std::size_t>(min(tile0 + tl, tiles - 1));
      const ::uint4* src = v < 64 ? codes + ((tile * chunks + c) * 4 + 2 * h) * 32 + v
                                  : metadata + (tile * chunks + c) * 16 + (v - 64);
      cp_async16_at(dst + idx * 16, src);
    }
  }
}

/// This warp's A operand of a stage: its fragment vectors of the stage's two k steps (at frag_at
/// and 512 bytes on) and metadata words of the chunk's mmas 2 buf, 2 buf + 1 (components 2 buf,
/// 2 buf + 1 of the vector at meta_at).
__device__ __forceinline__ void load_a_operand(unsigned stage, unsigned frag_at, unsigned meta_at, int buf,
                                               uint32_t (&a)[2][4], uint32_t (&meta)[2]) {
#pragma unroll
  for (int kk = 0; kk < 2; ++kk)
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(a[kk][0]), "=r"(a[kk][1]), "=r"(a[kk][2]), "=r"(a[kk][3])
                 : "r"(stage + frag_at + kk * 512));
  asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];" : "=r"(meta[0]), "=r"(meta[1]) : "r"(stage + meta_at + buf * 8));
}

/// The stage's two wgmmas (its k steps; the second's B 32 bytes further: descriptor + 4).
template <int BN, bool BF16>
__device__ __forceinline__ void wgmma_sp_stage(float (&acc)[BN / 8][1][4], const uint32_t (&a)[2][4], uint64_t desc,
                                               const uint32_t (&meta)[2]) {
#pragma unroll
  for (int kk = 0; kk < 2; ++kk) {
    if constexpr (BN == 256) wgmma_sp_m64n256k32<BF16>(acc, a[kk], desc + 4 * kk, meta[kk]);
    else wgmma_sp_m64n128k32<BF16>(acc, a[kk], desc + 4 * kk, meta[kk]);
  }
}

/// Holds an A operand's registers in place until here (in-flight wgmmas may still read them).
__device__ __forceinline__ void fence_a_operand(uint32_t (&a)[2][4], uint32_t (&meta)[2]) {
#pragma unroll
  for (int kk = 0; kk < 2; ++kk) {
#pragma unroll
    for (int p = 0; p < 4; ++p) fence_register(a[kk][p]);
    fence_register(meta[kk]);
  }
}

/// A block's sums stored to y through the staging area `stage` (BN x 256 bytes of shared memory,
/// idle: the ring after the loop; stage_wgmma_sums, then store_staged_sums: 16 bytes a thread
/// instead of 2 bytes a value from registers, 1.7-10% faster, docs/cuda-gemm-notes.md). K split over
/// gridDim.y blocks (blockIdx.x the output block): each block writes its BN / 2 sums a thread to
/// `partials` (one float4 a thread and 8-token column: coalesced 16-byte stores), and the last of
/// the set (the threadfence-reduction pattern, as wide_store) adds the splits in order 0, 1, ...
/// (its own from registers) eight columns at a time (8 loads in flight a split) and stages them.
/// row_block: the block's first weight row (warp w's are row_block + 16 w). Called by every thread
/// of the block, after a barrier that ends every wgmma's reads of the ring.
template <int BN, class T>
__device__ __forceinline__ void store_wgmma_split(const float (&acc)[BN / 8][1][4], float* __restrict__ partials,
                                                  unsigned* __restrict__ counters, unsigned stage, int row_block, int tok0,
                                                  int warp, int lane, int n, int m, T* __restrict__ y, int ldy) {
  const int split = static_cast<int>(blockIdx.y), splits = static_cast<int>(gridDim.y);
  const bool vec = (reinterpret_cast<std::uintptr_t>(y) & 15u) == 0 && ldy % 8 == 0;
  fence_proxy_async();  // the ring was last written by TMA and read by wgmma (async proxy)
  if (splits == 1) {
    stage_wgmma_sums<BN / 8, T>(acc, stage, 0, warp, lane);
    __syncthreads();
    store_staged_sums<BN>(stage, row_block, tok0, n, m, y, ldy, vec);
    return;
  }
  const auto slot = [&](int s) {
    return reinterpret_cast<float4*>(partials) + ((std::size_t)blockIdx.x * splits + s) * (BN / 8) * 256 + threadIdx.x;
  };
  float4* mine = slot(split);
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) __stcg(mine + j * 256, make_float4(acc[j][0][0], acc[j][0][1], acc[j][0][2], acc[j][0][3]));
  if (!last_of_split_set(counters, splits)) return;
  constexpr int batch = 8;
#pragma unroll
  for (int j0 = 0; j0 < BN / 8; j0 += batch) {
    float sum[batch][1][4] = {};
#pragma unroll 1
    for (int s = 0; s < splits; ++s) {  // in split order (deterministic); this block's own from registers
      if (s == split) {
#pragma unroll
        for (int j = 0; j < batch; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) sum[j][0][i] += acc[j0 + j][0][i];
        continue;
      }
      float4 v[batch];
      const float4* other = slot(s);
#pragma unroll
      for (int j = 0; j < batch; ++j) v[j] = __ldcg(other + (j0 + j) * 256);
#pragma unroll
      for (int j = 0; j < batch; ++j)
        sum[j][0][0] += v[j].x, sum[j][0][1] += v[j].y, sum[j][0][2] += v[j].z, sum[j][0][3] += v[j].w;
    }
    stage_wgmma_sums<batch, T>(sum, stage, j0 * 8, warp, lane);
  }
  __syncthreads();
  store_staged_sums<BN>(stage, row_block, tok0, n, m, y, ldy, vec);
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

/// Whether the current device runs the wgmma.sp kernel (wgmma_common.cuh).
inline bool sparse24_wgmma_usable() { return wgmma_usable(); }

/// The ring of the wgmma kernel: Stages stages of BN x 128 bytes of x (1024-byte aligned) and 8
/// tiles x 80 vectors (64 fragment vectors, 16 metadata); 1 KB more for aligning the start.
template <int BN, int Stages>
struct sparse24_wgmma_layout {
  static constexpr unsigned x_bytes = BN * 128u, tile_vecs = 80u, w_bytes = 8u * tile_vecs * 16u;
  static constexpr unsigned stage_bytes = x_bytes + w_bytes;
  static constexpr std::size_t bytes = std::size_t(Stages) * stage_bytes + 1024u;
  static_assert(stage_bytes % 1024u == 0, "sparse24_wgmma: stages 1024-byte aligned");
  static_assert(bytes <= 227u * 1024u, "sparse24_wgmma: a ring that does not fit shared memory");
  static_assert(Stages * stage_bytes >= BN * 256u, "sparse24_wgmma: the ring holds the staged outputs");
};

template <class T, int BN, int Stages>
__global__ void __launch_bounds__(256, 1)
    sparse24_wgmma_kernel(const T* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                          const ::uint4* __restrict__ metadata, int n, int tiles, int chunks, int blocks_n,
                          int split_chunks, float* __restrict__ partials, unsigned* __restrict__ counters,
                          T* __restrict__ y, int ldy) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(BN == 128 || BN == 256, "sparse24_wgmma_kernel: 128 or 256 tokens a block");
  static_assert(Stages >= 3, "sparse24_wgmma_kernel: a stage in use, one in flight, one refilled");
  using layout = sparse24_wgmma_layout<BN, Stages>;
  constexpr bool bf16 = is_bf16<T>;
  constexpr int tile_vecs = layout::tile_vecs;
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  constexpr int column = 8;  // weight blocks a column of the block order (as sparse24_large_kernel)
  const int blocks_m = static_cast<int>(gridDim.x) / blocks_n, b = static_cast<int>(blockIdx.x);
  const int col = b / (column * blocks_m), within = b - col * column * blocks_m;
  const int width = min(column, blocks_n - col * column);
  const int nb = col * column + within % width, mb = within / width;
  const int tile0 = nb * 8, m0 = mb * BN;
  const int c0 = blockIdx.y * split_chunks, steps = 2 * min(chunks - c0, split_chunks);  // half chunks

  const unsigned ring = (static_cast<unsigned>(__cvta_generic_to_shared(smem)) + 1023u) & ~1023u;
  // x: thread copies pieces threadIdx.x % 8 of rows threadIdx.x / 8 + 32 i (rows past m read row m - 1).
  const int piece = threadIdx.x & 7;
  const auto issue = [&](int step) {  // always commits a group (empty past the end)
    if (step < steps) {
      const int c = c0 + (step >> 1), h = step & 1;
      const unsigned stage = ring + static_cast<unsigned>(step % Stages) * layout::stage_bytes;
#pragma unroll
      for (int i = 0; i < BN / 32; ++i) {
        const int r = (threadIdx.x >> 3) + 32 * i;
        cp_async16_at(stage + r * 128 + ((piece ^ (r & 7)) << 4),
                      x + (size_t)min(m0 + r, m - 1) * ldx + (size_t)c * 128 + h * 64 + piece * 8);
      }
      // The 8 tiles' fragment vectors of k steps 2h, 2h + 1 (64) and metadata (16).
      copy_stage_weights<tile_vecs>(stage + layout::x_bytes, codes, metadata, tile0, tiles, chunks, c, h);
    }
    cp_async_commit();
  };

#pragma unroll
  for (int s = 0; s < Stages - 2; ++s) issue(s);
  float acc[BN / 8][1][4];
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) acc[j][0][0] = acc[j][0][1] = acc[j][0][2] = acc[j][0][3] = 0.0f;
  uint32_t a[2][2][4] = {}, meta[2][2] = {};  // [buffer = step % 2][k step of the stage]
  // This warp's tile in a stage: its fragment vectors (lane, then + 32 for the second k step) and
  // metadata vector 2g + t % 2 (lanes 4g, 4g + 1 give the metadata: sparsity selector 0).
  const unsigned frag_at = layout::x_bytes + (warp * tile_vecs + lane) * 16;
  const unsigned meta_at = layout::x_bytes + (warp * tile_vecs + 64 + 2 * g + (t & 1)) * 16;
  const auto step_body = [&](int step, auto buffer) {
    constexpr int buf = decltype(buffer)::value;  // = step % 2 = the half of the chunk
    cp_async_wait<Stages - 3>();
    fence_proxy_async();
    __syncthreads();  // the stage came from every thread; the stage refilled next is done with (step - 2)
    issue(step + Stages - 2);
    const unsigned stage = ring + static_cast<unsigned>(step % Stages) * layout::stage_bytes;
    load_a_operand(stage, frag_at, meta_at, buf, a[buf], meta[buf]);
    wgmma_fence();
    const uint64_t desc = sw128_descriptor(stage);
    wgmma_sp_stage<BN, bf16>(acc, a[buf], desc, meta[buf]);
    wgmma_commit();
    wgmma_wait<1>();  // step - 1's wgmmas are done: its registers and stage are free
    fence_a_operand(a[buf ^ 1], meta[buf ^ 1]);
  };
  for (int step = 0; step < steps; step += 2) {  // steps is even (two halves a chunk)
    step_body(step, std::integral_constant<int, 0>{});
    step_body(step + 1, std::integral_constant<int, 1>{});
  }
  wgmma_wait<0>();
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) fence_register(acc[j][0][i]);
  cp_async_wait<0>();
  __syncthreads();  // both warpgroups' wgmmas are done with the ring
  store_wgmma_split<BN>(acc, partials, counters, ring, tile0 * 16, m0, warp, lane, n, m, y, ldy);
#else
  (void)x, (void)m, (void)ldx, (void)codes, (void)metadata, (void)n, (void)tiles, (void)chunks, (void)blocks_n;
  (void)split_chunks, (void)partials, (void)counters, (void)y, (void)ldy;
#endif
}

/// M > 64, plain values, sm_90a: the wgmma.sp kernel with BN tokens a block. K is split (BN = 128
/// only) as options.split_k says, by default when the output blocks are fewer than the SMs.
template <int BN, int Stages, class Scheme, class T>
void gemm_sparse24_wgmma_with(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                              cudaStream_t stream, const gemm_options& options) {
  static_assert(packed_sparse24_view<Scheme>::plain, "cuda::gemm_sparse24: the wgmma path takes plain fp16 / bf16 values");
  const int n = static_cast<int>(w.rows), chunks = static_cast<int>(w.chunks);
  const std::size_t blocks_n = (w.tiles() + 7) / 8;
  const std::size_t blocks_m = (static_cast<std::size_t>(m) + BN - 1) / BN;
  LOWBIT_CHECK(blocks_n * blocks_m < (std::size_t(1) << 31),
               "cuda::gemm_sparse24: m=" << m << " by N=" << w.rows << " is too many blocks");
  const int blocks = static_cast<int>(blocks_n * blocks_m);
  gemm_options split_options = options;
  if (BN == 256) split_options.split_k = 1;  // its 128 sums a thread leave no room for the split-K reduction
  const wide_split split("cuda::gemm_sparse24", chunks, blocks, 1, std::size_t(128) * BN, split_options, stream);
  using layout = sparse24_wgmma_layout<BN, Stages>;
  constexpr auto kernel = sparse24_wgmma_kernel<T, BN, Stages>;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(layout::bytes)));
  kernel<<<dim3(blocks, split.splits), 256, layout::bytes, stream>>>(
      x, m, ldx, w.codes, w.metadata, n, static_cast<int>(w.tiles()), chunks, static_cast<int>(blocks_n), split.split_chunks,
      split.partials, split.counters, y, ldy);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

/// The clustered kernel (BN = 256 or 128 tokens a block, 2 blocks a cluster on adjacent weight
/// rows, the same tokens): x comes by TMA (a tensor map with the 128-byte swizzle), each block
/// copying half of the BN rows and multicasting it to both, so that x is read from L2 once per 256
/// weight rows. The shared-memory ring holds x alone (Stages stages of 64 dense k); the weights go
/// from global memory straight into registers: each warp loads its tile's 4 fragment vectors and
/// metadata vector of a chunk (16-byte loads in the pack's per-lane order), a pair of chunks at a
/// time, three steps before their first wgmmas (4 chunks of weights in registers), so there is no
/// cp.async and no block barrier in the loop. Stage s's x lands on full[s % Stages] (BN x 128
/// bytes of transactions: both halves); thread 32 refills the stage of step s - 2 at step s, once
/// its empty barrier has the arrivals of both blocks' two warpgroups (lane 0 of warps 0 and 4 at
/// rank 0's barrier, of warps 2 and 6 at rank 1's, once their wgmmas of that step are done). K may
/// be split over gridDim.y (store_wgmma_split adds the splits).
template <int BN, int Stages>
struct sparse24_wgmma_cluster_layout {
  static constexpr unsigned stage_bytes = BN * 128u;
  static constexpr unsigned barriers_at = Stages * stage_bytes;  // from the aligned start
  static constexpr std::size_t bytes = std::size_t(barriers_at) + 16u * Stages + 1024u;
  static_assert(bytes + 16u <= 227u * 1024u, "sparse24_wgmma: a ring that does not fit shared memory");  // + the split store's flag
  static_assert(barriers_at >= BN * 256u, "sparse24_wgmma: the ring holds the staged outputs");
};

/// A warp's weights of one chunk from global memory into registers: its fragment vectors of the 4
/// k steps (at frag, 32 vectors apart) and its metadata vector (word i: mma i's); read once per
/// block, so not kept in L1.
__device__ __forceinline__ void load_chunk_weights(const ::uint4* frag, const ::uint4* meta, uint32_t (&a)[4][4],
                                                   uint32_t (&words)[4]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(a[kk][0]), "=r"(a[kk][1]), "=r"(a[kk][2]), "=r"(a[kk][3])
                 : "l"(frag + kk * 32));
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(words[0]), "=r"(words[1]), "=r"(words[2]), "=r"(words[3])
               : "l"(meta));
}

/// Holds the weight registers in place until here (in-flight wgmmas may read them).
template <int Buffers>
__device__ __forceinline__ void fence_chunk_weights(uint32_t (&a)[Buffers][4][4], uint32_t (&words)[Buffers][4]) {
#pragma unroll
  for (int b = 0; b < Buffers; ++b) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int p = 0; p < 4; ++p) fence_register(a[b][kk][p]);
      fence_register(words[b][kk]);
    }
  }
}

/// The steps of the clustered kernel's loop body: a whole number of weight pairs (4 chunks, 8
/// steps) and of twice the ring (so that every step's stage and both barriers' phase parities are
/// constants in the unrolled body).
constexpr int cluster_loop_steps(int stages) {
  int p = 8;
  while (p % (2 * stages) != 0) p += 8;
  return p;
}

/// The clustered kernel. A step's work between its wgmmas is what its time follows (2 warps a
/// scheduler; docs/cuda-gemm-notes.md), so the loop body is unrolled over cluster_loop_steps(Stages)
/// steps: a step's ring stage, descriptor, barrier addresses and phase parities are constants (no
/// division by Stages), the TMA's k and the weights' pointers advance once a body. The weights come
/// a pair of chunks at a time into 4 register buffers (2 pairs), loaded at the pair's second step,
/// three steps before the next pair's first wgmmas: all those loads share one scoreboard, which
/// the compiler waits on whole, so it is waited on once a pair, on loads 3 steps old (loading a
/// chunk at a time into 3 buffers, each wait covered a load issued the step before). The TMA is
/// issued by thread 32 (warp 0 arrives), the empty barrier's first wait on the parity before its
/// first phase (complete at the start), so with no test of the step against Stages.
template <class T, int BN, int Stages>
__global__ void __launch_bounds__(256, 1)
    sparse24_wgmma_cluster_kernel(const __grid_constant__ CUtensorMap x_map, int m, const ::uint4* __restrict__ codes,
                                  const ::uint4* __restrict__ metadata, int n, int tiles, int chunks, int blocks_n,
                                  int column, int split_chunks, float* __restrict__ partials,
                                  unsigned* __restrict__ counters, T* __restrict__ y, int ldy) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(Stages >= 3, "sparse24_wgmma_cluster_kernel: a stage in use, one in flight, one refilled");
  constexpr int period = cluster_loop_steps(Stages);  // steps a loop body
  static_assert(period <= 24, "sparse24_wgmma_cluster_kernel: a loop body of at most 24 steps");
  using layout = sparse24_wgmma_cluster_layout<BN, Stages>;
  constexpr bool bf16 = is_bf16<T>;
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const unsigned rank = cluster_rank();
  // Columns of `column` weight blocks (even, as blocks_n: the two blocks of a cluster share mb).
  const int blocks_m = static_cast<int>(gridDim.x) / blocks_n, b = static_cast<int>(blockIdx.x);
  const int col = b / (column * blocks_m), within = b - col * column * blocks_m;
  const int width = min(column, blocks_n - col * column);
  const int nb = col * column + within % width, mb = within / width;
  const int tile0 = nb * 8, m0 = mb * BN;
  const int c0 = static_cast<int>(blockIdx.y) * split_chunks, nchunks = min(chunks - c0, split_chunks);
  const int steps = 2 * nchunks;  // half chunks (64 dense k)

  const unsigned ring = (static_cast<unsigned>(__cvta_generic_to_shared(smem)) + 1023u) & ~1023u;
  const unsigned full = ring + layout::barriers_at, empty = full + 8u * Stages;
  if (threadIdx.x == 0) {
    for (int j = 0; j < Stages; ++j) {
      mbar_init(full + 8u * j, 1);   // this block's expect_tx
      mbar_init(empty + 8u * j, 4);  // one arrival from each warpgroup of the cluster
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  cluster_sync();  // the peer's barriers exist before anything is multicast to it

  // The producer (thread 32): x of step s (its half, to both blocks) at stage s % Stages, once the
  // stage's previous x is released (parity: the phase before the first is complete at the start).
  const bool producer = threadIdx.x == 32;
  const unsigned x_at = ring + rank * (BN / 2) * 128u;
  const int x_row = m0 + static_cast<int>(rank) * (BN / 2);
  const auto issue = [&](int k, auto step_c) {  // step_c: the step modulo 2 Stages
    constexpr int s = decltype(step_c)::value, slot = s % Stages;
    mbar_wait(empty + 8u * slot, static_cast<unsigned>((s / Stages) & 1) ^ 1u);
    mbar_expect_tx(full + 8u * slot, layout::stage_bytes);
    tma_multicast(x_at + slot * layout::stage_bytes, &x_map, k, x_row, full + 8u * slot, 0x3);
  };
  const int k0 = c0 * 128;  // x's k of step 0 (step s: k0 + 64 s)
  if (producer) {
    unrolled_while(
        [&](auto s_c) {
          constexpr int s = decltype(s_c)::value;
          if (s < steps) issue(k0 + 64 * s, s_c);
          return true;
        },
        std::make_integer_sequence<int, Stages - 2>{});
  }
  // Lane 0 of warps 0, 2, 4, 6 release a stage: warps 0 and 4 (one a warpgroup) at rank 0's empty
  // barrier, 2 and 6 at rank 1's.
  const bool releaser = lane == 0 && (warp & 1) == 0;
  const unsigned release_at = map_to_rank(empty, static_cast<unsigned>(warp >> 1) & 1u);

  // This warp's tile (tiles past the last repeat it): fragment vector `lane` of each k step, and
  // metadata vector 2g + t % 2 (lanes 4g, 4g + 1 give the metadata: sparsity selector 0).
  const std::size_t tile = static_cast<std::size_t>(min(tile0 + warp, tiles - 1));
  const ::uint4* frag = codes + (tile * chunks + c0) * 128 + lane;
  const ::uint4* meta = metadata + (tile * chunks + c0) * 16 + 2 * g + (t & 1);
  uint32_t a[2][2][4][4], words[2][2][4];  // [pair % 2][chunk of the pair][k step]
  // Chunks first, first + 1 (those before nchunks) into `set`; frag / meta point at chunk `at` (a
  // running base: offsets are constants in the unrolled body).
  const auto load_pair = [&](int at, auto first_c, auto set_c) {
    constexpr int first = decltype(first_c)::value, set = decltype(set_c)::value;
#pragma unroll
    for (int j = 0; j < 2; ++j)
      if (at + first + j < nchunks)
        load_chunk_weights(frag + (first + j) * 128, meta + (first + j) * 16, a[set][j], words[set][j]);
  };
  const auto fence_set = [&](auto set_c) {
    constexpr int set = decltype(set_c)::value;
    fence_chunk_weights<2>(a[set], words[set]);
  };
  load_pair(0, std::integral_constant<int, 0>{}, std::integral_constant<int, 0>{});
  float acc[BN / 8][1][4];
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) acc[j][0][0] = acc[j][0][1] = acc[j][0][2] = acc[j][0][3] = 0.0f;
  // The stage descriptors differ in the start address alone (the low word: 14 bits of address / 16,
  // no carry out of them below 256 KB), so a 32-bit add gives each.
  const uint64_t desc0 = sw128_descriptor(ring), desc_high = desc0 & ~uint64_t(0xffffffffu);
  const uint32_t desc_low = static_cast<uint32_t>(desc0);

  // Chunk q of the body (chunk i + q of the block): its two steps 2q, 2q + 1 (global base + 2q, ...).
  int i = 0;  // the body's first chunk
  const auto step = [&](auto p_c) {
    constexpr int p = decltype(p_c)::value, slot = p % Stages, q = p / 2, h = p % 2;
    constexpr int set = (q / 2) % 2, j = q % 2;
    const int s = 2 * i + p;  // the block's step
    mbar_wait(full + 8u * slot, static_cast<unsigned>((p / Stages) & 1));
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      const uint64_t desc = desc_high | (desc_low + static_cast<uint32_t>(slot * (layout::stage_bytes >> 4) + 4 * kk));
      if constexpr (BN == 256) wgmma_sp_m64n256k32<bf16>(acc, a[set][j][2 * h + kk], desc, words[set][j][2 * h + kk]);
      else wgmma_sp_m64n128k32<bf16>(acc, a[set][j][2 * h + kk], desc, words[set][j][2 * h + kk]);
    }
    wgmma_commit();
    // The pair's second step: the next pair into the other set (the pair before it was done at the first).
    if constexpr (p % 4 == 1) load_pair(i, std::integral_constant<int, q + 2>{}, std::integral_constant<int, set ^ 1>{});
    if (producer && s + Stages - 2 < steps)
      issue(k0 + 64 * (s + Stages - 2), std::integral_constant<int, (p + Stages - 2) % (2 * Stages)>{});
    wgmma_wait<1>();  // step s - 1's wgmmas are done
    if constexpr (p % 4 == 0) fence_set(std::integral_constant<int, set ^ 1>{});  // the pair before: its last wgmmas done
    if (releaser && (p > 0 || i > 0)) mbar_arrive_at(release_at + 8u * ((p + Stages - 1) % Stages));
  };
  const auto chunk = [&](auto q_c) {
    constexpr int q = decltype(q_c)::value;
    if (i + q >= nchunks) return false;
    step(std::integral_constant<int, 2 * q>{});
    step(std::integral_constant<int, 2 * q + 1>{});
    return true;
  };
  for (; unrolled_while(chunk, std::make_integer_sequence<int, period / 2>{}); i += period / 2) {
    frag += (period / 2) * 128;
    meta += (period / 2) * 16;
  }
  wgmma_wait<0>();
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) fence_register(acc[j][0][e]);
  fence_set(std::integral_constant<int, 0>{});
  fence_set(std::integral_constant<int, 1>{});
  cluster_sync();  // no block leaves (or returns early in the split store) while its peer may still arrive at its barriers
  store_wgmma_split<BN>(acc, partials, counters, ring, tile0 * 16, m0, warp, lane, n, m, y, ldy);
#else
  (void)x_map, (void)m, (void)codes, (void)metadata, (void)n, (void)tiles, (void)chunks, (void)blocks_n, (void)column;
  (void)split_chunks, (void)partials, (void)counters, (void)y, (void)ldy;
#endif
}

/// The clustered kernel; false (nothing launched) where the tensor map cannot be made. K split as
/// options.split_k says (0: where the output blocks are fewer than the SMs, about one block an SM;
/// store_wgmma_split adds the splits); blocks in columns of `column` weight blocks (even). Stages:
/// whole loop bodies of at most 24 steps (cluster_loop_steps: 3, 4, 6, 8 or 12).
template <int Stages, class Scheme, class T, int BN = 256>
bool gemm_sparse24_wgmma_cluster(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                                 cudaStream_t stream, const gemm_options& options, std::integral_constant<int, BN> = {},
                                 int column = 8) {
  LOWBIT_CHECK(column >= 2 && column % 2 == 0, "cuda::gemm_sparse24: column=" << column << " must be even and >= 2");
  static_assert(packed_sparse24_view<Scheme>::plain, "cuda::gemm_sparse24: the wgmma path takes plain fp16 / bf16 values");
  CUtensorMap map{};
  if (encode_x_map(map, x, static_cast<int>(w.cols), m, ldx, BN / 2) != CUDA_SUCCESS) return false;
  const int n = static_cast<int>(w.rows), chunks = static_cast<int>(w.chunks);
  const std::size_t blocks_n = ((w.tiles() + 7) / 8 + 1) / 2 * 2;  // even: a cluster's two blocks share the tokens
  const std::size_t blocks_m = (static_cast<std::size_t>(m) + BN - 1) / BN;
  LOWBIT_CHECK(blocks_n * blocks_m < (std::size_t(1) << 31),
               "cuda::gemm_sparse24: m=" << m << " by N=" << w.rows << " is too many blocks");
  const int blocks = static_cast<int>(blocks_n * blocks_m);
  const wide_split split("cuda::gemm_sparse24", chunks, blocks, 1, std::size_t(128) * BN, options, stream);
  using layout = sparse24_wgmma_cluster_layout<BN, Stages>;
  const auto kernel = sparse24_wgmma_cluster_kernel<T, BN, Stages>;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(layout::bytes)));
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(split.splits));
  config.blockDim = dim3(256);
  config.dynamicSmemBytes = layout::bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = 2, attribute.val.clusterDim.y = 1, attribute.val.clusterDim.z = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  LOWBIT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, map, m, w.codes, w.metadata, n, static_cast<int>(w.tiles()), chunks,
                                       static_cast<int>(blocks_n), column, split.split_chunks, split.partials, split.counters,
                                       y, ldy));
  LOWBIT_CUDA_CHECK(cudaGetLastError());
  return true;
}

/// The default: M > 128: 256 tokens a block, clustered (x by TMA multicast, the weights straight
/// into registers: 1.17-1.57x the kernel that copied them through shared memory with every thread's
/// cp.async and a block barrier a step, H100 2026-11-27 14:19 UTC; its loop unrolled over 24 steps
/// with a pair of chunks of weights loaded at a time: 1.01-1.09x the loop before, 17:36-17:46 UTC), K split where those
/// blocks are fewer than the SMs (8192 x 8192 M = 256: 64 output blocks x 2 splits; 4096 x 14336
/// M = 256 / 512: 32 / 64 x 4 / 2), where the previous rule ran unclustered 128-token blocks (H100,
/// fp16 values, 2026-11-27: 4096 x 14336 M = 512 116-118 -> 99-107 us, M = 256 64 -> 60-63; 8192²
/// M = 256 66-68 -> 63-67; docs/cuda-gemm-notes.md). M <= 128: 128 tokens unclustered, K split where
/// even those are fewer than the SMs: a 256-token block would be half empty (14336 x 4096 M = 128,
/// whose 112 blocks the previous rule clustered: 73-74 against 36 us). The clustered kernel with 128
/// tokens was slower than the unclustered one (H100, 8192² M = 256: 88 against 65 us; 4096 x 14336
/// M = 512: 148 against 109).
template <class Scheme, class T>
void gemm_sparse24_wgmma(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                         cudaStream_t stream, const gemm_options& options) {
  if (m > 128) {
    if (gemm_sparse24_wgmma_cluster<6>(x, m, ldx, w, y, ldy, stream, options)) return;  // x by TMA multicast
    const std::size_t blocks_n = (w.tiles() + 7) / 8, blocks_256 = blocks_n * ((static_cast<std::size_t>(m) + 255) / 256);
    if (options.split_k <= 1 && 4 * blocks_256 >= 3 * static_cast<std::size_t>(sm_count())) {  // no tensor map encoder
      gemm_sparse24_wgmma_with<256, 5>(x, m, ldx, w, y, ldy, stream, options);
      return;
    }
  }
  gemm_sparse24_wgmma_with<128, 6>(x, m, ldx, w, y, ldy, stream, options);
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
