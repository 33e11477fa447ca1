/// \file
/// \brief lowbit::error and the checks that raise it (or call a handler when built without exceptions).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>

namespace lowbit {

/// Every checked lowbit function reports bad input with this exception; the message names the
/// argument and the numbers involved.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
};

/// With LOWBIT_NO_EXCEPTIONS defined, a failed check calls this handler instead of throwing. The
/// default prints the message and aborts; install your own with set_error_handler (it must not
/// return: lowbit has no way to continue after a failed precondition).
using error_handler = void (*)(const char* message);

namespace detail {
inline void default_error_handler(const char* message) {
  std::fprintf(stderr, "lowbit error: %s\n", message);
  std::abort();
}
inline error_handler& current_error_handler() {
  static error_handler handler = &default_error_handler;
  return handler;
}
}  // namespace detail

/// Installs `handler` (nullptr restores the default) and returns the previous one.
inline error_handler set_error_handler(error_handler handler) {
  error_handler previous = detail::current_error_handler();
  detail::current_error_handler() = handler ? handler : &detail::default_error_handler;
  return previous;
}

[[noreturn]] inline void raise_error(const std::string& message) {
#if defined(LOWBIT_NO_EXCEPTIONS)
  detail::current_error_handler()(message.c_str());
  std::abort();  // a handler that returns still stops here
#else
  throw error(message);
#endif
}

}  // namespace lowbit

/// LOWBIT_CHECK(cond, stream-expression): if cond is false, raises lowbit::error with the
/// streamed message, e.g. LOWBIT_CHECK(k % g == 0, "group_size " << g << " does not divide K=" << k).
#define LOWBIT_CHECK(cond, message)                        \
  do {                                                     \
    if (!(cond)) {                                         \
      std::ostringstream lowbit_check_stream_;             \
      lowbit_check_stream_ << message;                     \
      ::lowbit::raise_error(lowbit_check_stream_.str());   \
    }                                                      \
  } while (0)
