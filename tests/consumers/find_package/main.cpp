// lowbit consumed through find_package: see CMakeLists.txt beside this file.
#include <lowbit/lowbit.hpp>

#include "../common/lowbit_checks.hpp"

int main() { return run_lowbit_checks("find_package"); }
