/// \file
/// \brief The optional CUDA backend's one entry point: include this (from .cu files compiled by nvcc) and nothing under cuda/.
///
/// lowbit::cuda::pack(quantized_view) shuffles a quantized matrix into the GPU layout and uploads
/// it once; lowbit::cuda::gemm(x, m, ldx, packed.view(), y, ldy, stream) runs y = x · Wᵀ for
/// m = 1..16 fp16 or bf16 activations. lowbit::cuda::upload(kv_cache) copies an attention KV cache to the
/// device (or device_kv_cache(shape) allocates one there and lowbit::cuda::append quantizes new
/// tokens into it on the GPU); lowbit::cuda::decode(q, cache.view(), out, q_heads, workspace, stream) runs decode
/// attention over it. Needs CUDA 12+ and sm_80 or newer (mma.sync m16n8k16).
#pragma once

#if !defined(__CUDACC__)
#error "lowbit/cuda.cuh is for CUDA translation units (compile with nvcc)"
#endif

#include "cuda/packed_weights.cuh"
#include "cuda/gemm.cuh"
#include "cuda/sparse24_gemm.cuh"
#include "cuda/sparse24_gemm_int8.cuh"
#include "cuda/kv_cache.cuh"
#include "cuda/kv_append.cuh"
#include "cuda/decode.cuh"
