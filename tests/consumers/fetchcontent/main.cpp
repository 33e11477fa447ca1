// lowbit consumed through fetchcontent: see CMakeLists.txt beside this file.
#include <lowbit/lowbit.hpp>

#include "../common/lowbit_checks.hpp"

int main() { return run_lowbit_checks("fetchcontent"); }
