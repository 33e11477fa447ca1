# The optional CUDA backend (LOWBIT_WITH_CUDA=ON): enables CUDA and builds the GPU test and benchmark.
# Nothing here runs when the option is off, so the CPU build does not change. Architectures default
# to sm_80 (mma.sync) and sm_90a (Hopper); override with -DCMAKE_CUDA_ARCHITECTURES=...
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90a)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
  message(FATAL_ERROR "lowbit's CUDA backend needs CUDA 12 or newer (found ${CMAKE_CUDA_COMPILER_VERSION})")
endif()

# lowbit's formats share constexpr scalar code with the host (std::numeric_limits in __host__ __device__).
set(LOWBIT_CUDA_FLAGS --expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra)

# One CUDA executable of lowbit's: its sources, extra libraries, and (with tests on) a ctest name.
function(lowbit_cuda_executable name)
  cmake_parse_arguments(arg "" "TEST" "SOURCES;LIBRARIES" ${ARGN})
  add_executable(${name} ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE lowbit::lowbit ${arg_LIBRARIES})
  target_compile_features(${name} PRIVATE cxx_std_17 cuda_std_17)
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${LOWBIT_CUDA_FLAGS}>)
  if(arg_TEST AND LOWBIT_BUILD_TESTS)
    add_test(NAME ${arg_TEST} COMMAND ${name})
  endif()
endfunction()

set(cuda_dir ${CMAKE_CURRENT_SOURCE_DIR})
lowbit_cuda_executable(lowbit_test_cuda SOURCES ${cuda_dir}/tests/cuda/test_cuda.cu TEST cuda_gemm)
lowbit_cuda_executable(lowbit_bench_cuda SOURCES ${cuda_dir}/bench/cuda/bench_cuda.cu LIBRARIES CUDA::cublas)
# Decode attention over a low-bit KV cache: the test checks it against the CPU decode, which the
# host compiler builds (decode_reference.cpp: nvcc never parses the SIMD kernels).
lowbit_cuda_executable(lowbit_test_cuda_decode
                       SOURCES ${cuda_dir}/tests/cuda/test_cuda_decode.cu ${cuda_dir}/tests/cuda/decode_reference.cpp
                       TEST cuda_decode)
lowbit_cuda_executable(lowbit_bench_cuda_decode SOURCES ${cuda_dir}/bench/cuda/bench_cuda_decode.cu)
# 2:4 sparse + int4 GEMM on the sparse tensor cores (mma.sp): its test and benchmark.
lowbit_cuda_executable(lowbit_test_cuda_sparse24 SOURCES ${cuda_dir}/tests/cuda/test_cuda_sparse24.cu TEST cuda_sparse24)
lowbit_cuda_executable(lowbit_bench_cuda_sparse24 SOURCES ${cuda_dir}/bench/cuda/bench_cuda_sparse24.cu
                       LIBRARIES CUDA::cublas CUDA::cublasLt)
