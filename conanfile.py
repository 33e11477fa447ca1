# Conan 2 recipe for lowbit, a header-only library. The package holds the headers and lowbit's
# CMake modules; consumers get the CMake target lowbit::lowbit from find_package(lowbit).
#
#   conan create . -pr:a .ci/conan/profile --build=missing
#
# .ci/conan/profile declares Debian's xsimd with [platform_requires], so this works offline.
import os
import re

from conan import ConanFile
from conan.tools.files import copy, load


class LowbitConan(ConanFile):
    name = "lowbit"
    description = "Header-only C++17 kernels for low-bit and sparse neural-network inference"
    topics = ("quantization", "inference", "simd", "header-only")
    package_type = "header-library"
    exports_sources = "include/*", "cmake/*"
    no_copy_source = True

    def set_version(self):
        # One place for the version: project(lowbit VERSION x.y.z) in CMakeLists.txt.
        text = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        self.version = re.search(r"project\(lowbit\s+VERSION\s+([0-9.]+)", text).group(1)

    def requirements(self):
        self.requires("xsimd/[>=8.1.0 <9]")

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "*", src=os.path.join(self.source_folder, "include"),
             dst=os.path.join(self.package_folder, "include"))
        for module in ("LowbitXsimd.cmake", "LowbitConanXsimd.cmake"):
            copy(self, module, src=os.path.join(self.source_folder, "cmake"),
                 dst=os.path.join(self.package_folder, "lib", "cmake", "lowbit"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "lowbit")
        self.cpp_info.set_property("cmake_target_name", "lowbit::lowbit")
        self.cpp_info.requires = ["xsimd::xsimd"]
        # Where xsimd comes from the system ([platform_requires]), Conan generates no CMake files
        # for it: this module finds the system xsimd and gives it the name xsimd::xsimd.
        self.cpp_info.set_property("cmake_build_modules", [os.path.join("lib", "cmake", "lowbit", "LowbitConanXsimd.cmake")])
