# Finds xsimd for lowbit. Debian's xsimd 8.1 package exports a target that links "xtl" without
# depending on it; lowbit does not use xsimd's xtl features, so when no xtl target exists an
# empty one stands in (find_package(xtl) is tried first, so a real xtl wins).
if(NOT TARGET xsimd)
  find_package(xsimd REQUIRED)
endif()
get_target_property(_lowbit_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
if(_lowbit_xsimd_links MATCHES "(^|;)xtl(;|$)" AND NOT TARGET xtl)
  find_package(xtl QUIET)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED GLOBAL)
  endif()
endif()
unset(_lowbit_xsimd_links)
