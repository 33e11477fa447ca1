# Compiler flags that let one translation unit hold every x86 ISA path lowbit has (SSE4.2 up to
# AVX-512 with VNNI, VBMI and BF16). Code compiled with them picks a path at run time and only
# calls a path the CPU has, but the compiler may use these instructions anywhere in such a
# target: use it for tests and benchmarks, which run on the machine they target. CD and IFMA are
# listed because current xsimd (14.x) insists on consistent sets (avx512dq needs avx512cd, vbmi ifma).
#
# A native build on Linux takes only the flags whose instructions this CPU has (/proc/cpuinfo):
# the compiler may put them anywhere, e.g. AVX-512 stores in a test file's static initializer,
# which stopped the tests with SIGILL on an AVX2-only CPU before they could pick a path.
# LOWBIT_ALL_ISAS=ON keeps every flag the compiler takes (a binary for another machine).
include(CheckCXXCompilerFlag)
option(LOWBIT_ALL_ISAS "tests, benchmarks, examples: every x86 ISA path, whatever this CPU has" OFF)
set(LOWBIT_ALL_ISA_FLAGS "")
set(lowbit_cpu_flags "")
if(NOT LOWBIT_ALL_ISAS AND NOT CMAKE_CROSSCOMPILING AND EXISTS /proc/cpuinfo)
  file(STRINGS /proc/cpuinfo lowbit_cpu_flags REGEX "^flags" LIMIT_COUNT 1)
endif()
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  foreach(flag -msse4.2 -mavx2 -mfma -mf16c -mbmi2 -mavx512f -mavx512cd -mavx512bw -mavx512dq
               -mavx512vl -mavx512ifma -mavx512vnni -mavx512vbmi -mavx512bf16)
    string(MAKE_C_IDENTIFIER "LOWBIT_HAS${flag}" var)
    check_cxx_compiler_flag(${flag} ${var})
    # The CPU's name of the feature: -mavx512vnni is avx512_vnni, -msse4.2 sse4_2.
    string(REGEX REPLACE "^-m" "" feature ${flag})
    string(REPLACE "sse4.2" "sse4_2" feature ${feature})
    string(REGEX REPLACE "^avx512(vnni|bf16)$" "avx512_\\1" feature ${feature})
    if(${var} AND (lowbit_cpu_flags STREQUAL "" OR " ${lowbit_cpu_flags} " MATCHES "[ \t]${feature}[ \t]"))
      list(APPEND LOWBIT_ALL_ISA_FLAGS ${flag})
    endif()
  endforeach()
  message(STATUS "lowbit: tests, benchmarks and examples compiled with ${LOWBIT_ALL_ISA_FLAGS}")
endif()

function(lowbit_target_all_isas target)
  target_compile_options(${target} PRIVATE ${LOWBIT_ALL_ISA_FLAGS})
endfunction()
