/// \file
/// \brief cuda::gemm_sparse24 for M <= 16 with 4- or 8-bit integer kept values on sm_90a:
/// wgmma.mma_async.sp m64n8k32 / m64n16k32 over the same packed layout as the mma.sp kernels
/// (sparse24_gemm.cuh; included at its end, not on its own).
///
/// A block is WG warpgroups and 64 weight rows (4 tiles of 16): warp j of each warpgroup holds tile
/// j's A operand (its fragment and metadata words exactly as mma.sp.m16n8k32 takes them, which is
/// what wgmma.sp takes from registers a warp: sparse24_gemm_wgmma.cuh), dequantized in registers as
/// the mma.sp kernel does; x (NT = 16 tokens, or 8 for the benchmark) is B, read by the instruction from shared memory
/// through a descriptor (K-major, 128-byte swizzle), so one wgmma a 32-wide k step covers all the
/// tokens and no lane loads B fragments. The warpgroups split the block's K range (each its own
/// ring of Stages chunks: x, then the 4 tiles' codes, metadata and scales, copied by cp.async by
/// its 128 threads), so each warpgroup runs 4x the chunks a warp of the mma.sp kernel (whose warps
/// split K for all 4 tiles) runs: less of the time is the pipeline's fill and drain. A chunk's 4
/// wgmmas are one group, in flight while the next chunk's A is made (A double-buffered).
/// Numerics: the group scale is folded into the weights, as gemm_wgmma.cuh does (scaled sums of a
/// group would be read while the next group's wgmmas write others, which ptxas serializes): the
/// scaled weight is rounded once to fp16 (bf16: the scale rounded to bf16, then the product), one
/// rounding a weight more than the mma.sp kernel (bf16 two), inside the tests' tolerance; fp32
/// sums. (bf16 with the product made in fp32 and rounded once cost ~2.4 us more at 8192 x 8192
/// M = 16, H100: 17.3 against 14.9 us for fp16; as now 15.2.) The blocks of a cluster (1 x
/// Splits) split K further where the 64-row blocks are fewer than the SMs. The warpgroups' and the
/// cluster's sums are added in a fixed order (deterministic), each value of a thread's fragment by
/// one warpgroup of the cluster (not all by the first warpgroup of the first block): unsplit
/// through the ring, split through a landing area that the other blocks fill by st.async onto an
/// mbarrier (no fenced cluster barrier between the main loop and the sums).
/// The kernel's body exists only where compiled for sm_90a; the host takes this path only when the
/// loaded code for the current device has it (sparse24_wgmma_usable).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "sparse24_gemm_wgmma.cuh"

namespace lowbit {
namespace cuda {
namespace detail {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

/// D(64 x NT, fp32) += A(64 x 32, 2:4, registers) * B(32 x NT, shared memory, descriptor); NT = 8
/// or 16 tokens, fp16 (BF16: bf16).
template <int NT, bool BF16>
__device__ __forceinline__ void wgmma_sp_small(float (&d)[NT / 8][1][4], const uint32_t (&a)[4], uint64_t desc, uint32_t meta) {
#define LOWBIT_WGMMA_SMALL(SHAPE, TY, REGS, REST, PRED, ...)                                                            \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\nwgmma.mma_async.sp.sync.aligned." SHAPE ".f32." TY "." TY \
               " {" REGS "}, " REST ", p, 1, 1, 0;\n}\n"                                                                  \
               : __VA_ARGS__, "l"(desc), "r"(meta), "n"(1)                                                      \
               : "memory")
  if constexpr (NT == 8) {
    if constexpr (BF16)
      LOWBIT_WGMMA_SMALL("m64n8k32", "bf16", "%0, %1, %2, %3", "{%4, %5, %6, %7}, %8, %9, 0", "%10", LOWBIT_WGMMA_D4(d, 0) : LOWBIT_WGMMA_A(a));
    else
      LOWBIT_WGMMA_SMALL("m64n8k32", "f16", "%0, %1, %2, %3", "{%4, %5, %6, %7}, %8, %9, 0", "%10", LOWBIT_WGMMA_D4(d, 0) : LOWBIT_WGMMA_A(a));
  } else {
    if constexpr (BF16)
      LOWBIT_WGMMA_SMALL("m64n16k32", "bf16", "%0, %1, %2, %3, %4, %5, %6, %7", "{%8, %9, %10, %11}, %12, %13, 0", "%14",
                         LOWBIT_WGMMA_D4(d, 0), LOWBIT_WGMMA_D4(d, 1) : LOWBIT_WGMMA_A(a));
    else
      LOWBIT_WGMMA_SMALL("m64n16k32", "f16", "%0, %1, %2, %3, %4, %5, %6, %7", "{%8, %9, %10, %11}, %12, %13, 0", "%14",
                         LOWBIT_WGMMA_D4(d, 0), LOWBIT_WGMMA_D4(d, 1) : LOWBIT_WGMMA_A(a));
  }
#undef LOWBIT_WGMMA_SMALL
}

/// The rows' group scales as the A fragment's type, both halves (scale words half2(scale, 1024 +
/// zero)): fp16 as stored; bf16 rounded once (as gemm_wgmma.cuh).
template <bool BF16>
__device__ __forceinline__ uint32_t fragment_scale(uint32_t sc) {
  if constexpr (BF16) return bf16x2_bits(__low2float(*reinterpret_cast<const __half2*>(&sc)));
  else return __byte_perm(sc, 0, 0x1010);
}
/// The A fragment (registers p = 0, 2: row g; 1, 3: row g + 8) times the rows' scales s_g, s_g8
/// (fragment_scale), rounded to fp16 / bf16.
template <bool BF16>
__device__ __forceinline__ void scale_fragment(uint32_t (&a)[4], uint32_t s_g, uint32_t s_g8) {
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    if constexpr (BF16) asm("mul.rn.bf16x2 %0, %0, %1;" : "+r"(a[p]) : "r"(p & 1 ? s_g8 : s_g));
    else asm("mul.rn.f16x2 %0, %0, %1;" : "+r"(a[p]) : "r"(p & 1 ? s_g8 : s_g));
  }
}

/// A named barrier of the 128 threads of warpgroup `wg` (barrier 0 is __syncthreads').
__device__ __forceinline__ void warpgroup_barrier(int wg) {
  asm volatile("bar.sync %0, 128;" ::"r"(wg + 1) : "memory");
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

/// The most blocks of a cluster that split K (the launch clamps to it).
inline constexpr int sparse24_wgmma_small_max_splits = 4;

/// Slots (a value of every thread of a block: WG x 128 floats) of the landing area where the
/// blocks of a cluster put the sums each block adds: `splits` sources x ceil(values / splits)
/// values, the most over 1 .. sparse24_wgmma_small_max_splits splits.
constexpr unsigned sparse24_wgmma_small_slots(int values, int splits = 1) {
  const unsigned here = static_cast<unsigned>(splits * ((values + splits - 1) / splits));
  if (splits >= sparse24_wgmma_small_max_splits) return here;
  const unsigned rest = sparse24_wgmma_small_slots(values, splits + 1);
  return here > rest ? here : rest;
}

/// Shared memory of the small wgmma kernel: WG rings of Stages stages; all the x stages first (NT
/// rows of 256 bytes a chunk: two 64-wide halves of NT 128-byte rows, 1024-byte aligned), then the
/// weight stages (4 tiles of sparse24_tile_vecs<Vecs> vectors), then the landing area of a split's
/// sums and its mbarrier (apart from the rings: the other blocks of the cluster may send while this
/// one still runs its loop); 1 KB more for aligning the start.
template <int Vecs, int NT, int WG, int Stages>
struct sparse24_wgmma_small_layout {
  static constexpr unsigned x_bytes = NT * 256u, half_bytes = NT * 128u;
  static constexpr unsigned tile_vecs = sparse24_tile_vecs<Vecs>, w_bytes = 4u * tile_vecs * 16u;
  static constexpr unsigned w_at = WG * Stages * x_bytes;  // from the aligned start
  static constexpr unsigned land_at = w_at + WG * Stages * w_bytes, land_bytes = sparse24_wgmma_small_slots(NT / 2) * WG * 512u;
  static constexpr unsigned bar_at = land_at + land_bytes;  // the landing area's mbarrier
  static constexpr std::size_t bytes = std::size_t(bar_at) + 16u + 1024u;
  static_assert(Stages >= 3, "sparse24_wgmma_small: a stage in use, one in flight, one refilled");
  static_assert(bytes <= 227u * 1024u, "sparse24_wgmma_small: a ring that does not fit shared memory");
  static_assert(std::size_t(WG) * 128u * (NT / 2) * 4u <= std::size_t(w_at), "sparse24_wgmma_small: the reduction reuses the x ring");
};

/// The most stages, up to Want, whose rings fit the 227 KB a block may have.
template <int Vecs, int NT, int WG, int Want>
constexpr int sparse24_wgmma_small_stages() {
  constexpr unsigned stage = NT * 256u + 4u * sparse24_tile_vecs<Vecs> * 16u;
  constexpr unsigned land = sparse24_wgmma_small_slots(NT / 2) * WG * 512u + 16u;
  if constexpr (Want <= 3 || std::size_t(WG) * Want * stage + land + 1024u <= 227u * 1024u) return Want;
  else return sparse24_wgmma_small_stages<Vecs, NT, WG, Want - 1>();
}

template <class T, int Vecs, int NT, int WG, int Stages, bool Dependent = false>
__global__ void __launch_bounds__(WG * 128, 1)
    sparse24_wgmma_small_kernel(const T* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                                const ::uint4* __restrict__ metadata, const uint32_t* __restrict__ scales, int n, int tiles,
                                int chunks, int chunks_per_group, int groups, int split_chunks, T* __restrict__ y, int ldy) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (Dependent) grid_dependents_launch();  // at the start (dependent_launch.cuh says why)
  static_assert(NT == 8 || NT == 16, "sparse24_wgmma_small_kernel: 8 or 16 tokens");
  static_assert(Vecs == 1 || Vecs == 2, "sparse24_wgmma_small_kernel: 4- or 8-bit integer codes");
  using layout = sparse24_wgmma_small_layout<Vecs, NT, WG, Stages>;
  constexpr bool bf16 = is_bf16<T>;
  constexpr int tile_vecs = static_cast<int>(layout::tile_vecs), meta_at = 32 * Vecs;
  extern __shared__ ::uint4 smem[];
  const int tid = threadIdx.x & 127, wg = threadIdx.x >> 7, warp = tid >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int tile0 = blockIdx.x * 4;
  const unsigned raw = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const unsigned base = (raw + 1023u) & ~1023u;
  const unsigned x_ring = base + wg * Stages * layout::x_bytes;
  const unsigned w_ring = base + layout::w_at + wg * Stages * layout::w_bytes;
  const ::uint4* w_ring_ptr = smem + (w_ring - raw) / 16u;
  // This block's K range (split blockIdx.y of gridDim.y), then this warpgroup's part of it.
  const int b0 = blockIdx.y * split_chunks, blen = max(0, min(chunks - b0, split_chunks));
  const int c_begin = b0 + wg * blen / WG, steps = b0 + (wg + 1) * blen / WG - c_begin;
  // The blocks start their ranges at different chunks (as sparse24_gemm_kernel: else every block
  // reads the same chunk of x at once).
  const int rot = steps > 0 ? static_cast<int>(blockIdx.x % static_cast<unsigned>(steps)) : 0;

  // Rows m .. NT - 1 of every x stage are zeros (never copied): their columns of D are not stored,
  // but stay finite.
  for (int i = tid; i < Stages * 2 * NT * 8; i += 128) {
    const int r = (i >> 3) % NT;
    if (r >= m) asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};" ::"r"(x_ring + i * 16u), "r"(0u) : "memory");
  }
  // The copy issue's addresses, made once. x: pieces idx = tid + 128 i (row idx / 16, 16-byte piece
  // idx % 16 of the chunk's 256 bytes: half q / 8, piece q % 8 of that half's 128-byte row, swizzled).
  constexpr int x_copies = NT / 8;
  const T* x_src[x_copies];
  unsigned x_dst[x_copies];
  bool x_on[x_copies];
#pragma unroll
  for (int i = 0; i < x_copies; ++i) {
    const int idx = tid + 128 * i, r = idx >> 4, q = idx & 15;
    x_on[i] = r < m;
    x_src[i] = x + (size_t)min(r, m - 1) * ldx + (size_t)c_begin * 128 + q * 8;
    x_dst[i] = (q >> 3) * layout::half_bytes + r * 128 + (((q & 7) ^ (r & 7)) << 4);
  }
  // Codes: vectors idx = tid + 128 v of the stage's 4 x 32 Vecs (tile idx / (32 Vecs)).
  const ::uint4* code_src[Vecs];
  unsigned code_dst[Vecs];
#pragma unroll
  for (int v = 0; v < Vecs; ++v) {
    const int idx = tid + 128 * v, tl = idx / (32 * Vecs), within = idx % (32 * Vecs);
    const std::size_t tile = static_cast<std::size_t>(min(tile0 + tl, tiles - 1));
    code_src[v] = codes + (tile * chunks + c_begin) * Vecs * 32 + within;
    code_dst[v] = (tl * tile_vecs + within) * 16;
  }
  // Metadata (threads 0..63: tile tid / 16, entry tid % 16) or scales (64..79: tile (tid - 64) / 4).
  const bool meta_thread = tid < 64, aux = tid < 80;
  const int aux_tl = meta_thread ? tid >> 4 : ((tid - 64) >> 2) & 3;
  const std::size_t aux_tile = static_cast<std::size_t>(min(tile0 + aux_tl, tiles - 1));
  const ::uint4* aux_src = meta_thread ? metadata + (aux_tile * chunks + c_begin) * 16 + (tid & 15)
                                       : reinterpret_cast<const ::uint4*>(scales) + aux_tile * groups * 4 + (tid & 3);
  const unsigned aux_dst = (aux_tl * tile_vecs + meta_at + (meta_thread ? (tid & 15) : 16 + (tid & 3))) * 16;
  const uint64_t read_once = l2_evict_first();  // the weights (as sparse24_gemm_kernel)
  // The next copy's chunk of the range, kept running (no modulo or group division a step): step s
  // copies chunk lc = (s + rot) % steps, of scale group grp, in_grp chunks into it (scale threads).
  const int grp0 = c_begin / chunks_per_group, in0 = c_begin - grp0 * chunks_per_group;
  int lc = rot, grp = (c_begin + rot) / chunks_per_group, in_grp = (c_begin + rot) - grp * chunks_per_group;
  // slot = step % Stages; the step's x (copy_x) and weights (copy_w), then a group committed
  // (commit; empty past the end).
  const auto issue = [&](int step, unsigned slot, bool copy_w = true, bool copy_x = true, bool commit = true) {
    if (step < steps) {
      const unsigned xs = x_ring + slot * layout::x_bytes, ws = w_ring + slot * layout::w_bytes;
      if (copy_x) {
#pragma unroll
        for (int i = 0; i < x_copies; ++i) cp_async16_if(xs + x_dst[i], x_src[i] + (size_t)lc * 128, x_on[i]);
      }
      if (copy_w) {
#pragma unroll
        for (int v = 0; v < Vecs; ++v) cp_async16_hint_at(ws + code_dst[v], code_src[v] + (size_t)lc * Vecs * 32, read_once);
        cp_async16_hint_if(ws + aux_dst, aux_src + (meta_thread ? lc * 16 : grp * 4), aux, read_once);
      }
      ++lc, ++in_grp;
      if (in_grp == chunks_per_group) in_grp = 0, ++grp;
      if (lc == steps) lc = 0, grp = grp0, in_grp = in0;
    }
    if (commit) cp_async_commit();
  };

  // K split over a cluster: the landing area's mbarrier (the end's), made known to the cluster
  // before any block sends to it (the matching cluster_wait is after the main loop).
  if (gridDim.y > 1) {
    if (threadIdx.x == 0) {
      mbar_init(base + layout::bar_at, 1);
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    cluster_arrive_relaxed();
  }
  if constexpr (Dependent) {
    // The first stages' weights while the previous kernel finishes, then, once its writes are
    // visible, their x, one group a stage (the first also holds every first-stage weight: groups
    // complete in order, so the loop's waits stay as they are); the copy's running chunk walked twice.
    const int lc0 = lc, grp_0 = grp, in_grp0 = in_grp;
#pragma unroll
    for (int s = 0; s < Stages - 2; ++s) issue(s, s, true, false, false);
    lc = lc0, grp = grp_0, in_grp = in_grp0;
    grid_dependency_wait();
#pragma unroll
    for (int s = 0; s < Stages - 2; ++s) issue(s, s, false, true);
  } else {
#pragma unroll
    for (int s = 0; s < Stages - 2; ++s) issue(s, s);
  }
  float acc[NT / 8][1][4];
#pragma unroll
  for (int j = 0; j < NT / 8; ++j) acc[j][0][0] = acc[j][0][1] = acc[j][0][2] = acc[j][0][3] = 0.0f;
  uint32_t a[2][4][4] = {}, meta[2][4] = {};  // [buffer = step % 2][k step i of the chunk]
  // The loop body is a whole turn of the ring (twice where Stages is odd, so that the A buffer is
  // constant too): each step's stage and the stage it refills are constants. The steps after the
  // last whole turn: two at a time, their stages counted (no exit inside an unrolled turn: ptxas
  // then serializes the wgmmas, C7511).
  constexpr int turn = Stages % 2 ? 2 * Stages : Stages;
  // The x ring's descriptor (+ slot * x_bytes / 16: stage slot's; x_ring + the ring < 256 KB), of wg
  // broadcast from lane 0: ptxas then knows it is one value a warp and keeps the descriptors in
  // uniform registers (fewer instructions a step). Not so for the copies' addresses: with those
  // uniform, ptxas 13.0 made a cp.async form ([R+UR], desc[UR1]) that faults (illegal instruction).
  const uint64_t desc0 =
      sw128_descriptor(base + __shfl_sync(~0u, static_cast<int>(threadIdx.x >> 7), 0) * Stages * layout::x_bytes);
  const auto step_body = [&](int step, unsigned slot, unsigned refill, auto buffer) {
    constexpr int b = decltype(buffer)::value;  // = step % 2
    cp_async_wait<Stages - 3>();
    fence_proxy_async();    // this thread's x copies, visible to the wgmmas
    warpgroup_barrier(wg);  // the stage came from all 128 threads; the stage refilled next is done with (step - 2)
    issue(step + Stages - 2, refill);
    const ::uint4* ts = w_ring_ptr + slot * (layout::w_bytes / 16u) + warp * tile_vecs;
    sparse24_tile<Vecs, bf16> tile;
    tile.load(ts, lane);
    const uint32_t s_g = fragment_scale<bf16>(tile.sc_g), s_g8 = fragment_scale<bf16>(tile.sc_g8);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      tile.fragment(a[b][i], ts, lane, i);
      scale_fragment<bf16>(a[b][i], s_g, s_g8);
      meta[b][i] = tile.meta[i];
    }
    wgmma_fence();
    const uint64_t desc = desc0 + slot * (layout::x_bytes / 16u);
    // k step i: half i / 2 (NT 128-byte rows further), 64 bytes into the rows for odd i.
#pragma unroll
    for (int i = 0; i < 4; ++i) wgmma_sp_small<NT, bf16>(acc, a[b][i], desc + (i >> 1) * (layout::half_bytes / 16) + (i & 1) * 4, meta[b][i]);
    wgmma_commit();
    wgmma_wait<1>();  // step - 1's wgmmas are done: its registers and stage are free
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int p = 0; p < 4; ++p) fence_register(a[b ^ 1][i][p]);
      fence_register(meta[b ^ 1][i]);
    }
  };
  int step = 0;
  for (; step + turn <= steps; step += turn)
    unrolled_while(
        [&](auto s_c) {
          constexpr int s = decltype(s_c)::value;
          step_body(step + s, s % Stages, (s + Stages - 2) % Stages, std::integral_constant<int, s % 2>{});
          return true;
        },
        std::make_integer_sequence<int, turn>{});
  // step % Stages == 0 here.
  const auto next = [](unsigned slot) { return slot + 1 == Stages ? 0u : slot + 1; };
  unsigned stage = 0, refill = Stages - 2;
  for (; step + 1 < steps; step += 2) {
    step_body(step, stage, refill, std::integral_constant<int, 0>{});
    stage = next(stage), refill = next(refill);
    step_body(step + 1, stage, refill, std::integral_constant<int, 1>{});
    stage = next(stage), refill = next(refill);
  }
  if (step < steps) step_body(step, stage, refill, std::integral_constant<int, 0>{});
  wgmma_wait<0>();
#pragma unroll
  for (int j = 0; j < NT / 8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) fence_register(acc[j][0][i]);
  cp_async_wait<0>();

  // The sums: value v of a thread's fragment (acc[v / 4][0][v % 4]) of every warpgroup and block
  // of the cluster is added by one warpgroup, over the blocks 0, 1, ... and in each the
  // warpgroups 0, 1, ... (a fixed order), and stored.
  constexpr int values = NT / 2;
  const int splits = static_cast<int>(gridDim.y);
  if (splits == 1) {  // through the ring ([value][thread]); warpgroup w adds values w, w + WG, ...
    __syncthreads();  // every warpgroup is done with the ring
    float* red = reinterpret_cast<float*>(smem + (base - raw) / 16u);
#pragma unroll
    for (int v = 0; v < values; ++v) red[v * (WG * 128) + threadIdx.x] = acc[v >> 2][0][v & 3];
    __syncthreads();
    for (int v = wg; v < values; v += WG) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < WG; ++w) sum += red[v * (WG * 128) + w * 128 + tid];
      store_wgmma_value(sum, v, (tile0 + warp) * 16, 0, g, t, n, m, y, ldy);
    }
    return;
  }
  // Split: value v goes to block v % splits of the cluster, into the landing area's slot (source
  // block, v / splits) (slot: WG x 128 floats, [warpgroup][thread]); that block's warpgroup
  // (v / splits) % WG adds it. Values for another block go by st.async, counted in bytes on that
  // block's mbarrier: no fence and no cluster barrier between the main loop and the sums (the
  // fenced cluster barriers of a pulling version, MEMBAR.ALL.GPU each, drew 9% of its stall
  // samples; pushed, 0.2-0.6 us less at 4096 x 14336 M = 9..16, H100).
  const int rank = static_cast<int>(cluster_rank()), owned_max = (values + splits - 1) / splits;
  const int owned = (values - rank + splits - 1) / splits;  // values v with v % splits == rank
  const unsigned land = base + layout::land_at, land_bar = base + layout::bar_at;
  float* landing = reinterpret_cast<float*>(smem + (land - raw) / 16u);
  const auto slot = [&](int source, int j, int w) { return ((source * owned_max + j) * WG + w) * 128 + tid; };
  cluster_wait();  // every block's mbarrier is made
#pragma unroll
  for (int v = 0; v < values; ++v) {
    const int dest = v % splits, at = slot(rank, v / splits, wg);
    const float value = acc[v >> 2][0][v & 3];
    if (dest == rank) landing[at] = value;
    else st_async_f32(map_to_rank(land + at * 4u, dest), value, map_to_rank(land_bar, dest));
  }
  if (threadIdx.x == 0) mbar_expect_tx(land_bar, static_cast<unsigned>((splits - 1) * owned * WG * 128 * 4));
  __syncthreads();         // this block's own values
  mbar_wait(land_bar, 0);  // the other blocks'
  for (int j = wg; j < owned; j += WG) {
    float sum = 0.0f;
    for (int r = 0; r < splits; ++r)
#pragma unroll
      for (int w = 0; w < WG; ++w) sum += landing[slot(r, j, w)];
    store_wgmma_value(sum, rank + j * splits, (tile0 + warp) * 16, 0, g, t, n, m, y, ldy);
  }
  // No block leaves before every block has had all its values (the st.async it sent are done).
  cluster_arrive_relaxed();
  cluster_wait();
#else
  (void)x, (void)m, (void)ldx, (void)codes, (void)metadata, (void)scales, (void)n, (void)tiles, (void)chunks;
  (void)chunks_per_group, (void)groups, (void)split_chunks, (void)y, (void)ldy;
#endif
}

/// Blocks of a cluster that split K, for blocks_n 64-row blocks: the nearest whole number that
/// fills the SMs (64 blocks of 132 SMs: 2; 128 blocks: 1).
inline int sparse24_wgmma_small_splits(int blocks_n) {
  const int sms = sm_count();
  return blocks_n >= sms ? 1 : (sms + blocks_n / 2) / blocks_n;
}

/// The small wgmma kernel with NT tokens, WG warpgroups a block and up to Stages chunks a ring (as
/// many as fit), K split over `splits` blocks of a cluster (0: as many as make the blocks about one
/// an SM, at most 4); launched as clusters only where split (or `cluster`: for the benchmark); as a
/// programmatic dependent of the stream's previous kernel where `dependent`.
template <int NT, int WG, int Stages, class Scheme, class T>
void gemm_sparse24_wgmma_small_with(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                                    cudaStream_t stream, int splits = 0, bool cluster = false, bool dependent = false) {
  constexpr int vecs = packed_sparse24_view<Scheme>::vecs;
  static_assert(vecs == 1 || vecs == 2, "cuda::gemm_sparse24: the small wgmma kernel takes 4- or 8-bit integer codes");
  LOWBIT_CHECK(m >= 1 && m <= NT, "cuda::gemm_sparse24: m=" << m << " is more than the kernel's " << NT << " tokens");
  const int tiles = static_cast<int>(w.tiles()), chunks = static_cast<int>(w.chunks), blocks_n = (tiles + 3) / 4;
  if (splits <= 0) splits = sparse24_wgmma_small_splits(blocks_n);
  splits = splits < 1 ? 1 : splits > sparse24_wgmma_small_max_splits ? sparse24_wgmma_small_max_splits : splits > chunks ? chunks : splits;
  const int split_chunks = (chunks + splits - 1) / splits;
  constexpr int stages = sparse24_wgmma_small_stages<vecs, NT, WG, Stages>();
  using layout = sparse24_wgmma_small_layout<vecs, NT, WG, stages>;
  const auto run = [&](auto kernel) {
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(layout::bytes)));
    launch_kernel(kernel, dim3(static_cast<unsigned>(blocks_n), static_cast<unsigned>(splits)), dim3(WG * 128), layout::bytes, stream,
                  dependent, splits > 1 || cluster ? static_cast<unsigned>(splits) : 0u, x, m, ldx, w.codes, w.metadata, w.scales,
                  static_cast<int>(w.rows), tiles, chunks, static_cast<int>(w.chunks_per_group), static_cast<int>(w.groups),
                  split_chunks, y, ldy);
  };
  if (dependent) run(sparse24_wgmma_small_kernel<T, vecs, NT, WG, stages, true>);
  else run(sparse24_wgmma_small_kernel<T, vecs, NT, WG, stages>);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

/// M <= 16, integer codes, sm_90a: the small wgmma kernel with 16 tokens (gemm_sparse24's default
/// there) where it was measured faster than the mma.sp kernel, else false (nothing launched; also
/// where the device has no sm_90a code). Measured on an H100 (bench_cuda_sparse24 --quick --m16,
/// g64, the mma.sp kernel in the same binary, two rounds, 2026-11-27 20:15 UTC): where 64-row
/// blocks fill the SMs (8192 x 8192: 128 blocks, not split) from M = 9 (int4 fp16 M = 9 15.3 ->
/// 14.3 us, M = 16 17.5 -> 14.3; int8 M = 9 22.4 -> 19.1; int4 bf16 M = 9 14.8 -> 14.4); where K
/// is split over a cluster (4096 x 14336: 64 blocks, clusters of 2) from M = 9 for int4 (fp16
/// M = 9 16.1 -> 14.1, M = 16 20.4 -> 14.2; bf16 M = 9 15.3 -> 14.4) and from M = 11 for int8 (M = 9
/// 18.6 against 18.3-18.8, M = 12 19.6 -> 18.2, M = 16 22.4 -> 18.2; 11 by interpolation). With 8
/// tokens (m64n8), int4, where the 64-row blocks are 0.9 to 1 an SM (8192 x 8192: 128 blocks, not
/// split), from M = 2: against the mma.sp default in the same binary (H100, 200 launches, two calls
/// 2026-11-27 22:55 and 23:10 UTC) fp16 M = 2..8 13.33-13.60 against 13.45-14.04 us (M = 8 13.39 /
/// 13.60 against 13.76 / 14.04), bf16 13.35-13.63 against 13.58-14.20; M = 1 13.31 / 13.47 against
/// 13.29 / 13.62 (left to mma.sp). Split (4096 x 14336) it was slower (M = 1..8 13.4-13.7 against
/// 11.6-13.0 us).
inline constexpr int sparse24_wgmma_small_from = 9;              ///< the smallest M it takes
inline constexpr int sparse24_wgmma_small_from_split_int8 = 11;  ///< ... for int8 codes with K split
inline constexpr int sparse24_wgmma_small_8_from = 2;            ///< ... with 8 tokens (int4, 64-row blocks 0.9 to 1 an SM)
template <class Scheme, class T>
bool gemm_sparse24_wgmma_small(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                               cudaStream_t stream, bool dependent) {
  constexpr int vecs = packed_sparse24_view<Scheme>::vecs;
  if constexpr (vecs > 2) {
    return false;
  } else {
    if (m > 16 || !sparse24_wgmma_usable()) return false;
    const int blocks_n = static_cast<int>((w.tiles() + 3) / 4), sms = sm_count();
    const bool split = sparse24_wgmma_small_splits(blocks_n) > 1;  // as the launch splits
    if (vecs == 1 && m <= 8 && m >= sparse24_wgmma_small_8_from && 10 * blocks_n >= 9 * sms && blocks_n <= sms) {
      gemm_sparse24_wgmma_small_with<8, 4, 8>(x, m, ldx, w, y, ldy, stream, 0, false, dependent);
      return true;
    }
    if (m < (split && vecs == 2 ? sparse24_wgmma_small_from_split_int8 : sparse24_wgmma_small_from)) return false;
    gemm_sparse24_wgmma_small_with<16, 4, vecs == 1 ? 6 : 4>(x, m, ldx, w, y, ldy, stream, 0, false, dependent);
    return true;
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
