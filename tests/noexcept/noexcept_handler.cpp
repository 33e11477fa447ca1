// Built with -fno-exceptions -DLOWBIT_NO_EXCEPTIONS: a failed LOWBIT_CHECK must call the handler
// installed with lowbit::set_error_handler. Exit codes: 42 = the handler ran (what the test wants),
// 1 = a check that should have failed did not, 2 = a valid call reached the handler.
#include <lowbit/lowbit.hpp>

#include <cstdio>
#include <cstdlib>
#include <vector>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "this test must be compiled without exceptions"
#endif

namespace {
bool expect_failure = false;

[[noreturn]] void exit_handler(const char* message) {
  std::printf("lowbit-noexcept: handler called: %s\n", message);
  std::fflush(stdout);
  std::_Exit(expect_failure ? 42 : 2);
}
}  // namespace

int main() {
  lowbit::set_error_handler(&exit_handler);
  using scheme = lowbit::scheme<lowbit::int4, lowbit::fp16>;

  // A valid call must not reach the handler.
  std::vector<float> w(4 * 32, 0.25f);
  const auto q = lowbit::quantize_rtn<scheme>(w.data(), 4, 32, 32, lowbit::quant_options{32});
  if (q.rows() != 4 || q.cols() != 32) return 3;

  // rows = 0 breaks quantize_rtn's precondition: the handler exits with 42.
  expect_failure = true;
  (void)lowbit::quantize_rtn<scheme>(w.data(), 0, 32, 32);
  std::printf("lowbit-noexcept: the failed check returned to the caller\n");
  return 1;
}
