/// \file
/// \brief Programmatic dependent launch (sm_90): a kernel launched with
/// cudaLaunchAttributeProgrammaticStreamSerialization may start while the stream's previous kernel
/// finishes (once that kernel's blocks have all run launch_dependents, or exited); it must run
/// griddepcontrol.wait, which returns when the previous grid has completed and its writes are
/// visible, before it reads what that kernel may write or writes what it may read. The device
/// side, and the host launch that sets the attribute up.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "packed_weights.cuh"

namespace lowbit {
namespace cuda {
namespace detail {

/// Lets the stream's next kernel, if launched as a programmatic dependent, start now (it still
/// waits for this grid's completion before it reads); a no-op otherwise and before sm_90. The
/// M <= 16 GEMMs call it first thing: once every block of this grid has started, the next kernel's
/// blocks take SMs as this grid's blocks leave them and copy their first weights meanwhile (on an
/// H100 0.3-2.4 us faster a launch than calling it after the main loop: docs/cuda-gemm-notes.md).
__device__ __forceinline__ void grid_dependents_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
/// Waits until the previous kernel of the stream has completed and its writes are visible; at once
/// where this kernel was not launched as a programmatic dependent, and before sm_90.
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// Launches kernel(args...) on `grid` x `block` threads with `smem` bytes of dynamic shared memory
/// on `stream` by cudaLaunchKernelEx: in clusters of cluster_y blocks along y where cluster_y > 0,
/// and as a programmatic dependent of the stream's previous kernel where `dependent` and the kernel
/// was compiled for sm_90+ (else it has no griddepcontrol.wait: compute_80 PTX that the driver
/// compiles for an sm_90 card).
template <class... Params, class... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, bool dependent,
                   unsigned cluster_y, Args... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attributes[2]{};
  unsigned count = 0;
  if (cluster_y > 0) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = 1, attributes[count].val.clusterDim.y = cluster_y, attributes[count].val.clusterDim.z = 1;
    ++count;
  }
  if (dependent) {
    cudaFuncAttributes compiled{};
    LOWBIT_CUDA_CHECK(cudaFuncGetAttributes(&compiled, kernel));
    if (compiled.ptxVersion >= 90) {
      attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attributes[count].val.programmaticStreamSerializationAllowed = 1;
      ++count;
    }
  }
  config.attrs = attributes;
  config.numAttrs = count;
  LOWBIT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, args...));
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
