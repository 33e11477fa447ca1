// lowbit consumed through add_subdirectory: see CMakeLists.txt beside this file.
#include <lowbit/lowbit.hpp>

#include "../common/lowbit_checks.hpp"

int main() { return run_lowbit_checks("add_subdirectory"); }
