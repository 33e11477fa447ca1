# Flags for lowbit's own targets (tests, benchmarks, examples), never for lowbit::lowbit itself:
# a consumer's warnings and sanitizers are the consumer's business.
#
#   LOWBIT_WERROR=ON                  -Wall -Wextra -Werror
#   LOWBIT_SANITIZE=address,undefined -fsanitize=<list> -fno-sanitize-recover=all (compile and link)
#
# lowbit_project_target(<target>) applies both; lowbit_project_targets_in(<dir>) applies them to
# every executable and library defined in <dir> and below, so a new test, benchmark or example
# target gets them without anyone remembering to ask.

function(lowbit_project_warnings target)
  if(LOWBIT_WERROR)
    if(MSVC)
      target_compile_options(${target} PRIVATE /W4 /WX)
    else()
      target_compile_options(${target} PRIVATE -Wall -Wextra -Werror)
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
        # GCC 12 (Debian 12's) reports its own AVX/AVX-512 intrinsics as using an uninitialized
        # value (_mm256_undefined_si256 inlined into _mm512_extracti64x4_epi64 and friends, GCC
        # PR 105593, fixed in 13): keep these two as warnings there. Clang's -Werror build keeps
        # -Wuninitialized an error.
        target_compile_options(${target} PRIVATE -Wno-error=uninitialized -Wno-error=maybe-uninitialized)
      endif()
    endif()
  endif()
endfunction()

function(lowbit_project_sanitizers target)
  if(LOWBIT_SANITIZE)
    set(flags -fsanitize=${LOWBIT_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_compile_options(${target} PRIVATE ${flags})
    target_link_options(${target} PRIVATE ${flags})
  endif()
endfunction()

function(lowbit_project_target target)
  lowbit_project_warnings(${target})
  lowbit_project_sanitizers(${target})
endfunction()

function(lowbit_project_targets_in dir)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type MATCHES "^(EXECUTABLE|STATIC_LIBRARY|SHARED_LIBRARY|MODULE_LIBRARY|OBJECT_LIBRARY)$")
      lowbit_project_target(${target})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(subdir IN LISTS subdirs)
    lowbit_project_targets_in(${subdir})
  endforeach()
endfunction()
