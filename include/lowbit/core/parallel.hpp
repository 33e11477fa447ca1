/// \file
/// \brief Executors: how kernels split work over threads. Anything callable as
/// `exec(n, [&](std::size_t begin, std::size_t end) { ... })` that runs the function over disjoint
/// ranges covering [0, n) exactly once, and returns when all of them are done, is an executor.
///
/// lowbit ships three: serial_executor (the default: one call over [0, n)), thread_pool (fixed
/// worker threads; the calling thread takes part) and, when compiled with OpenMP, openmp_executor.
/// Engines with their own pool pass a lambda that forwards to it.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <immintrin.h>
#define LOWBIT_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define LOWBIT_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define LOWBIT_CPU_RELAX() ((void)0)
#endif

#include "config.hpp"
#include "error.hpp"

namespace lowbit {

/// Chunk `index` of `chunks` balanced contiguous chunks of [0, n): sizes differ by at most one.
inline std::pair<std::size_t, std::size_t> chunk_range(std::size_t n, std::size_t chunks, std::size_t index) noexcept {
  const std::size_t base = n / chunks, extra = n % chunks;
  const std::size_t begin = index * base + std::min(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

/// Runs everything on the calling thread, as one call f(0, n) (none when n == 0).
struct serial_executor {
  std::size_t concurrency() const noexcept { return 1; }
  template <class F>
  void operator()(std::size_t n, F&& f) const {
    if (n > 0) f(std::size_t(0), n);
  }
};

/// A fixed set of worker threads. `pool(n, f)` splits [0, n) into min(size(), n) contiguous,
/// balanced chunks, runs chunk 0 on the calling thread and the others on workers, and returns when
/// all are done. The first exception a chunk throws is rethrown in the caller (after every chunk
/// has finished). A call allocates nothing. Calls from several threads are serialized; a call from
/// inside a running chunk (nested parallelism) runs serially on that thread.
///
/// Waiting threads spin briefly (a kernel usually follows a kernel) and then sleep on a condition
/// variable, so an idle pool costs no CPU.
class thread_pool {
 public:
  /// `threads` is the number of threads that run chunks, the caller included (0: one per hardware
  /// thread). thread_pool(1) starts no thread and runs everything on the caller.
  explicit thread_pool(std::size_t threads = 0) {
    if (threads == 0) threads = std::max<std::size_t>(1, std::thread::hardware_concurrency());
    size_ = threads;
    workers_.reserve(threads - 1);
    LOWBIT_TRY {
      for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    }
    LOWBIT_CATCH_ALL {
      shutdown();
      LOWBIT_RETHROW;
    }
  }
  ~thread_pool() { shutdown(); }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// Threads that run chunks, the caller included.
  std::size_t size() const noexcept { return size_; }
  std::size_t concurrency() const noexcept { return size_; }

  template <class F>
  void operator()(std::size_t n, F&& f) {
    if (n == 0) return;
    using fn_type = std::remove_reference_t<F>;
    const std::size_t chunks = std::min(size_, n);
    if (chunks == 1 || active_pool() == this) {  // nothing to share, or nested inside our own chunk
      f(std::size_t(0), n);
      return;
    }
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    const thread_pool* outer = active_pool();
    active_pool() = this;
    struct restore {
      const thread_pool* outer;
      ~restore() { active_pool() = outer; }
    } restore_active{outer};

    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_.context = const_cast<void*>(static_cast<const void*>(std::addressof(f)));
      job_.call = [](void* context, std::size_t begin, std::size_t end) {
        (*static_cast<fn_type*>(context))(begin, end);
      };
      job_.n = n;
      job_.chunks = chunks;
      error_ = nullptr;
      pending_.store(chunks - 1, std::memory_order_relaxed);
      generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    work_cv_.notify_all();

    run_chunk(job_, 0);
    wait_done();
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  /// Same as operator().
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    (*this)(n, std::forward<F>(f));
  }

 private:
  static constexpr int spin_iterations = 4000;  // ~ tens of microseconds of pause before sleeping

  static const thread_pool*& active_pool() noexcept {
    thread_local const thread_pool* pool = nullptr;
    return pool;
  }

  struct job {
    void* context = nullptr;  // type-erased pointer to the caller's function object
    void (*call)(void*, std::size_t, std::size_t) = nullptr;
    std::size_t n = 0, chunks = 0;
  };

  void run_chunk(const job& current, std::size_t index) noexcept {
    const auto range = chunk_range(current.n, current.chunks, index);
    LOWBIT_TRY { current.call(current.context, range.first, range.second); }
    LOWBIT_CATCH_ALL {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void wait_done() {
    for (int i = 0; i < spin_iterations; ++i) {
      if (pending_.load(std::memory_order_acquire) == 0) return;
      LOWBIT_CPU_RELAX();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
  }

  void worker_loop(std::size_t index) {
    active_pool() = this;
    std::uint64_t seen = 0;
    for (;;) {
      // Wait for a new generation (a job) or shutdown: spin first, then sleep.
      bool ready = false;
      for (int i = 0; i < spin_iterations && !ready; ++i) {
        ready = generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_acquire);
        if (!ready) LOWBIT_CPU_RELAX();
      }
      if (!ready) {
        std::unique_lock<std::mutex> lock(mutex_);
        work_cv_.wait(lock, [&] {
          return generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_acquire);
        });
      }
      job current;
      {
        // Snapshot the job with its generation: the fields are written under this mutex.
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_.load(std::memory_order_acquire)) return;
        seen = generation_.load(std::memory_order_relaxed);
        current = job_;
      }
      // A worker not needed this time does nothing; the caller cannot start another job before
      // every needed worker has finished, so a needed worker never misses its generation.
      if (index >= current.chunks) continue;
      run_chunk(current, index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);  // pairs with the caller's check-then-sleep
        done_cv_.notify_one();
      }
    }
  }

  void shutdown() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true, std::memory_order_release);
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

  std::size_t size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // one job at a time
  std::mutex mutex_;       // guards sleeping and the job fields' publication
  std::mutex error_mutex_;
  std::condition_variable work_cv_, done_cv_;
  job job_;  // the current call's job, valid while the call runs
  std::exception_ptr error_;
  alignas(64) std::atomic<std::uint64_t> generation_{0};
  alignas(64) std::atomic<std::size_t> pending_{0};
  std::atomic<bool> stop_{false};
};

#if defined(_OPENMP)
/// Runs chunks in an OpenMP parallel region: min(threads, n) balanced contiguous chunks, one a
/// thread (threads == 0: omp_get_max_threads()). Exceptions are caught inside the region and the
/// first one is rethrown after it.
struct openmp_executor {
  int threads = 0;
  std::size_t concurrency() const noexcept {
    return static_cast<std::size_t>(threads > 0 ? threads : omp_get_max_threads());
  }
  template <class F>
  void operator()(std::size_t n, F&& f) const {
    if (n == 0) return;
    const std::size_t wanted = std::min<std::size_t>(concurrency(), n);
    if (wanted <= 1) {
      f(std::size_t(0), n);
      return;
    }
    std::exception_ptr error;
#pragma omp parallel num_threads(static_cast<int>(wanted))
    {
      const std::size_t team = static_cast<std::size_t>(omp_get_num_threads());
      const std::size_t me = static_cast<std::size_t>(omp_get_thread_num());
      // The runtime may give fewer threads than asked: split over the team we got.
      const std::size_t chunks = std::min(team, n);
      if (me < chunks) {
        const auto range = chunk_range(n, chunks, me);
        LOWBIT_TRY { f(range.first, range.second); }
        LOWBIT_CATCH_ALL {
#pragma omp critical(lowbit_openmp_executor_error)
          {
            if (!error) error = std::current_exception();
          }
        }
      }
    }
    if (error) std::rethrow_exception(error);
  }
};
#endif

}  // namespace lowbit
