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

add_executable(lowbit_test_cuda ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda/test_cuda.cu)
target_link_libraries(lowbit_test_cuda PRIVATE lowbit::lowbit)
target_compile_features(lowbit_test_cuda PRIVATE cxx_std_17 cuda_std_17)
target_compile_options(lowbit_test_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${LOWBIT_CUDA_FLAGS}>)
if(LOWBIT_BUILD_TESTS)
  add_test(NAME cuda_gemm COMMAND lowbit_test_cuda)
endif()

add_executable(lowbit_bench_cuda ${CMAKE_CURRENT_SOURCE_DIR}/bench/cuda/bench_cuda.cu)
target_link_libraries(lowbit_bench_cuda PRIVATE lowbit::lowbit CUDA::cublas)
target_compile_features(lowbit_bench_cuda PRIVATE cxx_std_17 cuda_std_17)
target_compile_options(lowbit_bench_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${LOWBIT_CUDA_FLAGS}>)

# Decode attention over a low-bit KV cache: the test checks it against the CPU decode, which the
# host compiler builds (decode_reference.cpp: nvcc never parses the SIMD kernels).
add_executable(lowbit_test_cuda_decode ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda/test_cuda_decode.cu
                                       ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda/decode_reference.cpp)
target_link_libraries(lowbit_test_cuda_decode PRIVATE lowbit::lowbit)
target_compile_features(lowbit_test_cuda_decode PRIVATE cxx_std_17 cuda_std_17)
target_compile_options(lowbit_test_cuda_decode PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${LOWBIT_CUDA_FLAGS}>)
if(LOWBIT_BUILD_TESTS)
  add_test(NAME cuda_decode COMMAND lowbit_test_cuda_decode)
endif()

add_executable(lowbit_bench_cuda_decode ${CMAKE_CURRENT_SOURCE_DIR}/bench/cuda/bench_cuda_decode.cu)
target_link_libraries(lowbit_bench_cuda_decode PRIVATE lowbit::lowbit)
target_compile_features(lowbit_bench_cuda_decode PRIVATE cxx_std_17 cuda_std_17)
target_compile_options(lowbit_bench_cuda_decode PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${LOWBIT_CUDA_FLAGS}>)

# 2:4 sparse + int4 GEMM on the sparse tensor cores (mma.sp): its test and benchmark.
add_executable(lowbit_test_cuda_sparse24 ${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda/test_cuda_sparse24.cu)
target_link_libraries(lowbit_test_cuda_sparse24 PRIVATE lowbit::lowbit)
target_compile_features(lowbit_test_cuda_sparse24 PRIVATE cxx_std_17 cuda_std_17)
target_compile_options(lowbit_test_cuda_sparse24 PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${LOWBIT_CUDA_FLAGS}>)
if(LOWBIT_BUILD_TESTS)
  add_test(NAME cuda_sparse24 COMMAND lowbit_test_cuda_sparse24)
endif()

add_executable(lowbit_bench_cuda_sparse24 ${CMAKE_CURRENT_SOURCE_DIR}/bench/cuda/bench_cuda_sparse24.cu)
target_link_libraries(lowbit_bench_cuda_sparse24 PRIVATE lowbit::lowbit CUDA::cublas)
target_compile_features(lowbit_bench_cuda_sparse24 PRIVATE cxx_std_17 cuda_std_17)
target_compile_options(lowbit_bench_cuda_sparse24 PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${LOWBIT_CUDA_FLAGS}>)
