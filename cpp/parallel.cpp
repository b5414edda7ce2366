#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>

namespace logitops {
namespace {

constexpr int kMaxThreads = 1024;  // the one cap, for set_num_threads and LOGITOPS_NUM_THREADS

int hardware_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(std::min<unsigned>(hw, kMaxThreads)) : 1;
}

// A positive decimal integer, surrounding whitespace allowed, capped at kMaxThreads; 0 when
// `s` is anything else (signs, exponents, trailing text, zero).
int parse_thread_count(const char* s) {
  while (std::isspace(static_cast<unsigned char>(*s))) ++s;
  if (!std::isdigit(static_cast<unsigned char>(*s))) return 0;
  long long n = 0;
  for (; std::isdigit(static_cast<unsigned char>(*s)); ++s)
    n = std::min<long long>(n * 10 + (*s - '0'), kMaxThreads + 1LL);  // saturate: no overflow
  while (std::isspace(static_cast<unsigned char>(*s))) ++s;
  if (*s != '\0' || n < 1) return 0;
  return static_cast<int>(std::min<long long>(n, kMaxThreads));
}

// Read once, when the module is loaded (at `import logitops`). A bad value is not fatal for
// an environment variable: one line on stderr says so and the default is used.
int default_threads() {
  const int hw = hardware_threads();
  const char* env = std::getenv("LOGITOPS_NUM_THREADS");
  if (!env) return hw;
  const char* first = env;  // empty or blank: as if unset (`LOGITOPS_NUM_THREADS= cmd`)
  while (std::isspace(static_cast<unsigned char>(*first))) ++first;
  if (*first == '\0') return hw;
  if (const int n = parse_thread_count(env)) return n;
  std::fprintf(stderr,
               "logitops: ignoring LOGITOPS_NUM_THREADS='%.40s' (not a positive integer); "
               "using %d threads\n",
               env, hw);
  return hw;
}

std::atomic<int> g_num_threads{default_threads()};

// Said once per process: a pool that cannot start its threads still computes, on fewer.
void warn_threads_unavailable(const char* why, int got, int wanted) {
  static std::atomic<bool> said{false};
  if (said.exchange(true)) return;
  std::fprintf(stderr,
               "logitops: could not start worker threads (%s); running on %d of the %d threads "
               "asked for\n",
               why, got, wanted);
}

// Workers sleep on `wake_` until a new job generation is posted, take chunks from `next_`
// until none are left, and report through `busy_`. The caller works on the same job.
// A Pool is never destroyed: its workers must not be joined during interpreter teardown (a
// daemon thread may still be inside a kernel), and after fork() it is abandoned (below).
class Pool {
 public:
  // Returns false (and does nothing) when another thread is using the pool.
  bool run(int64_t n_chunks, const std::function<void(int64_t)>& chunk_fn, int threads) {
    std::unique_lock<std::mutex> job_lock(job_mutex_, std::try_to_lock);
    if (!job_lock.owns_lock()) return false;
    ensure_workers(threads - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &chunk_fn;
      n_chunks_ = n_chunks;
      next_.store(0);
      busy_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return busy_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  void work() {
    for (;;) {
      const int64_t c = next_.fetch_add(1);
      if (c >= n_chunks_) return;
      (*job_)(c);
    }
  }

  void worker_loop(uint64_t seen) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m_);
        wake_.wait(lk, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
      }
      work();
      std::lock_guard<std::mutex> lk(m_);
      if (--busy_ == 0) done_.notify_one();
    }
  }

  // Starts `want` workers, or as many as the system allows: a thread that cannot be created
  // (process or memory limits) leaves its chunks to the others and the caller. `requested_`
  // remembers what was asked, so a shortfall is not retried on every call, only when the
  // thread count changes.
  void ensure_workers(int want) {
    if (want == requested_) return;
    stop();
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = false;
    }
    requested_ = want;
    const uint64_t gen = generation_;  // no worker runs: no lock needed to read it
    try {
      workers_.reserve(static_cast<size_t>(want));
      for (int i = 0; i < want; ++i) workers_.emplace_back([this, gen] { worker_loop(gen); });
    } catch (const std::exception& e) {
      warn_threads_unavailable(e.what(), static_cast<int>(workers_.size()) + 1, want + 1);
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  int requested_ = 0;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t n_chunks_ = 0;
  std::atomic<int64_t> next_{0};
  int busy_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

std::atomic<Pool*> g_pool{nullptr};

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  Pool* fresh = new Pool();
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread installed one first (`p` is now that one)
  return *p;
}

// A child of fork() has only the forking thread. The parent's pool may be mid-job there: its
// mutexes held by threads that do not exist in the child, its counters waiting on workers
// that were not copied. Nothing of it can be trusted, so the child forgets it (leaking it:
// its std::thread handles must be neither joined nor destroyed) and makes a fresh one on its
// first pooled call. Nothing is locked before the fork, so fork() never waits for a kernel.
void forget_pool_in_child() { g_pool.store(nullptr, std::memory_order_relaxed); }

[[maybe_unused]] const int g_atfork_registered = pthread_atfork(nullptr, nullptr, &forget_pool_in_child);

void run_chunks(int64_t n_chunks, const std::function<void(int64_t)>& chunk_fn) {
  const int threads = get_num_threads();
  if (n_chunks > 1 && threads > 1 && pool().run(n_chunks, chunk_fn, threads)) return;
  for (int64_t c = 0; c < n_chunks; ++c) chunk_fn(c);
}

}  // namespace

void set_num_threads(int n) { g_num_threads.store(std::clamp(n, 1, kMaxThreads)); }

int get_num_threads() { return g_num_threads.load(); }

int64_t grain_for(int64_t work_per_item, int64_t target_work) {
  return std::max<int64_t>(1, target_work / std::max<int64_t>(1, work_per_item));
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t n_chunks = (n + grain - 1) / grain;
  if (n_chunks == 1) {
    fn(0, n);
    return;
  }
  run_chunks(n_chunks, [&](int64_t c) { fn(c * grain, std::min(n, (c + 1) * grain)); });
}

void parallel_reduce(int64_t n, int64_t grain, int k, const std::function<void(int64_t, int64_t, double*)>& fn,
                     double* out) {
  std::fill(out, out + k, 0.0);
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t n_chunks = (n + grain - 1) / grain;
  if (n_chunks == 1) {
    fn(0, n, out);
    return;
  }
  std::vector<double> partial(static_cast<size_t>(n_chunks * k), 0.0);
  run_chunks(n_chunks, [&](int64_t c) { fn(c * grain, std::min(n, (c + 1) * grain), partial.data() + c * k); });
  for (int64_t c = 0; c < n_chunks; ++c)
    for (int j = 0; j < k; ++j) out[j] += partial[static_cast<size_t>(c * k + j)];
}

}  // namespace logitops
