// Executors: every index covered exactly once, small and empty ranges, exceptions, nesting, reuse.
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "lowbit/core/parallel.hpp"

namespace {

// Runs exec over [0, n) and checks that every index is visited exactly once, by ranges that are
// non-empty and contiguous.
template <class Executor>
void check_coverage(Executor&& exec, std::size_t n, std::size_t max_chunks) {
  std::vector<std::atomic<int>> hits(n);
  for (auto& h : hits) h.store(0);
  std::atomic<std::size_t> calls{0};
  exec(n, [&](std::size_t begin, std::size_t end) {
    EXPECT_LT(begin, end) << "empty range [" << begin << ", " << end << ")";
    EXPECT_LE(end, n);
    for (std::size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
    calls.fetch_add(1);
  });
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i << " of n=" << n;
  EXPECT_LE(calls.load(), max_chunks) << "n=" << n;
  if (n > 0) {
    EXPECT_GE(calls.load(), 1u);
  }
}

TEST(ChunkRange, BalancedAndContiguous) {
  for (std::size_t n : {0u, 1u, 2u, 7u, 64u, 1000u}) {
    for (std::size_t chunks = 1; chunks <= 9; ++chunks) {
      std::size_t next = 0;
      for (std::size_t c = 0; c < chunks; ++c) {
        const auto r = lowbit::chunk_range(n, chunks, c);
        EXPECT_EQ(r.first, next);
        EXPECT_LE(r.second - r.first, n / chunks + 1);
        EXPECT_GE(r.second - r.first, n / chunks);
        next = r.second;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(SerialExecutor, OneCallCoversAll) {
  lowbit::serial_executor exec;
  for (std::size_t n : {0u, 1u, 5u, 1000u}) check_coverage(exec, n, 1);
  int calls = 0;
  exec(0, [&](std::size_t, std::size_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (std::size_t threads : {1u, 2u, 3u, 4u, 8u}) {
    lowbit::thread_pool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (std::size_t n : {0u, 1u, 2u, 3u, 5u, 7u, 8u, 9u, 100u, 1001u, 65536u}) {
      SCOPED_TRACE(::testing::Message() << "threads=" << threads << " n=" << n);
      check_coverage(pool, n, threads);
    }
  }
}

TEST(ThreadPool, SmallNUsesAtMostNChunks) {
  lowbit::thread_pool pool(4);
  for (std::size_t n = 1; n <= 4; ++n) {
    std::atomic<int> calls{0};
    pool(n, [&](std::size_t begin, std::size_t end) {
      EXPECT_EQ(end - begin, 1u);
      calls.fetch_add(1);
    });
    EXPECT_EQ(calls.load(), static_cast<int>(n));
  }
}

TEST(ThreadPool, ZeroDoesNotCall) {
  lowbit::thread_pool pool(3);
  std::atomic<int> calls{0};
  pool(0, [&](std::size_t, std::size_t) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 0);
}

TEST(ThreadPool, UsesSeveralThreads) {
  lowbit::thread_pool pool(2);
  std::mutex m;
  std::set<std::thread::id> ids;
  pool(2, [&](std::size_t, std::size_t) {
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_TRUE(ids.count(std::this_thread::get_id())) << "the caller takes part";
}

TEST(ThreadPool, PropagatesExceptions) {
  lowbit::thread_pool pool(4);
  // From a worker's chunk and from the caller's chunk (chunk 0).
  for (std::size_t throwing_index : {0u, 99u, 50u}) {
    std::atomic<int> finished{0};
    EXPECT_THROW(pool(100,
                      [&](std::size_t begin, std::size_t end) {
                        if (throwing_index >= begin && throwing_index < end) throw std::runtime_error("boom");
                        finished.fetch_add(1);
                      }),
                 std::runtime_error);
    EXPECT_EQ(finished.load(), 3) << "the other chunks still ran to completion";
  }
  // Every chunk throws: one exception comes out, and the pool still works afterwards.
  EXPECT_THROW(pool(8, [](std::size_t, std::size_t) { throw std::logic_error("all"); }), std::logic_error);
  check_coverage(pool, 1000, 4);
}

TEST(ThreadPool, NestedCallRunsSerially) {
  lowbit::thread_pool pool(2);
  std::atomic<int> inner_total{0};
  pool(2, [&](std::size_t, std::size_t) {
    pool(10, [&](std::size_t begin, std::size_t end) { inner_total.fetch_add(static_cast<int>(end - begin)); });
  });
  EXPECT_EQ(inner_total.load(), 20);
}

TEST(ThreadPool, ManyCallsAndConcurrentCallers) {
  lowbit::thread_pool pool(3);
  std::atomic<long> total{0};
  for (int i = 0; i < 2000; ++i)
    pool(7, [&](std::size_t begin, std::size_t end) { total.fetch_add(static_cast<long>(end - begin)); });
  EXPECT_EQ(total.load(), 2000 * 7);

  total = 0;
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t)
    callers.emplace_back([&] {
      for (int i = 0; i < 300; ++i)
        pool(5, [&](std::size_t begin, std::size_t end) { total.fetch_add(static_cast<long>(end - begin)); });
    });
  for (auto& c : callers) c.join();
  EXPECT_EQ(total.load(), 3 * 300 * 5);
}

TEST(ThreadPool, ConstFunctionObject) {
  lowbit::thread_pool pool(2);
  std::atomic<int> sum{0};
  const auto f = [&](std::size_t begin, std::size_t end) { sum.fetch_add(static_cast<int>(end - begin)); };
  pool(10, f);
  EXPECT_EQ(sum.load(), 10);
}

#if defined(_OPENMP)
TEST(OpenMPExecutor, CoversAndPropagates) {
  lowbit::openmp_executor exec{2};
  for (std::size_t n : {0u, 1u, 3u, 1000u}) check_coverage(exec, n, 2);
  EXPECT_THROW(exec(10, [](std::size_t, std::size_t) { throw std::runtime_error("x"); }), std::runtime_error);
}
#endif

}  // namespace
