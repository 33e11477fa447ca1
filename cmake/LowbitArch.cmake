# Compiler flags that let one translation unit hold every x86 ISA path lowbit has (SSE4.2 up to
# AVX-512 with VNNI, VBMI and BF16). Code compiled with them picks a path at run time and only
# calls a path the CPU has, but the compiler may use these instructions anywhere in such a
# target: use it for tests and benchmarks, which run on the machine they target. CD and IFMA are
# listed because current xsimd (14.x) insists on consistent sets (avx512dq needs avx512cd, vbmi ifma).
include(CheckCXXCompilerFlag)
set(LOWBIT_ALL_ISA_FLAGS "")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  foreach(flag -msse4.2 -mavx2 -mfma -mf16c -mbmi2 -mavx512f -mavx512cd -mavx512bw -mavx512dq
               -mavx512vl -mavx512ifma -mavx512vnni -mavx512vbmi -mavx512bf16)
    string(MAKE_C_IDENTIFIER "LOWBIT_HAS${flag}" var)
    check_cxx_compiler_flag(${flag} ${var})
    if(${var})
      list(APPEND LOWBIT_ALL_ISA_FLAGS ${flag})
    endif()
  endforeach()
endif()

function(lowbit_target_all_isas target)
  target_compile_options(${target} PRIVATE ${LOWBIT_ALL_ISA_FLAGS})
endfunction()
