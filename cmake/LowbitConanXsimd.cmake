# Included by the lowbit-config.cmake that Conan's CMakeDeps generates (a cmake_build_module of
# conanfile.py). With xsimd from Conan, xsimd::xsimd exists already and nothing happens. With
# xsimd declared in [platform_requires] (the system's, e.g. Debian's libxsimd-dev), Conan generates
# no CMake files for it: find the system package, add the xtl stand-in (LowbitXsimd.cmake), and
# name its target xsimd::xsimd, which lowbit::lowbit links.
if(NOT TARGET xsimd::xsimd)
  if(NOT TARGET xsimd)
    find_package(xsimd REQUIRED CONFIG)
  endif()
  include("${CMAKE_CURRENT_LIST_DIR}/LowbitXsimd.cmake")
  add_library(xsimd::xsimd INTERFACE IMPORTED)
  set_target_properties(xsimd::xsimd PROPERTIES INTERFACE_LINK_LIBRARIES xsimd)
endif()
