#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>
#ifdef __linux__
#include <sched.h>
#endif

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

int current_cpu() {
#ifdef __linux__
  return sched_getcpu();
#else
  return -1;
#endif
}

// A worker's affinity, narrowed for one job to leave the caller's CPU, then given back as it was
// (Linux; elsewhere nothing).
class CpuMove {
 public:
  // Moves the calling thread off `cpu` when it runs there and may run elsewhere; true if it did.
  bool away_from([[maybe_unused]] int cpu) {
#ifdef __linux__
    if (cpu < 0 || cpu >= CPU_SETSIZE || current_cpu() != cpu) return false;
    if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) return false;
    cpu_set_t others = saved_;
    CPU_CLR(cpu, &others);
    return CPU_COUNT(&others) > 0 && sched_setaffinity(0, sizeof others, &others) == 0;
#else
    return false;
#endif
  }
  void back() {
#ifdef __linux__
    sched_setaffinity(0, sizeof saved_, &saved_);
#endif
  }

 private:
#ifdef __linux__
  cpu_set_t saved_;
#endif
};

// A job is published as two words: `limit_` = (generation << 32) | chunk count, then `claim_` =
// (generation << 32) | next chunk. A thread claims chunk i by a compare-and-swap of claim_ from
// (g, i) to (g, i + 1) that only succeeds while claim_ still names the generation g its limit_
// came from and i is below that job's count: a worker that wakes after the job is over (or
// while a newer one is being posted) claims nothing and cannot touch a job that is gone. The
// caller works on its own job and returns once every chunk is done (`done_`), without waiting
// for workers that never got a chunk: a late worker's wake-up costs the caller nothing.
// Idle workers spin briefly before sleeping on `wake_`, so back-to-back calls (a training
// loop) find them awake.
// A Pool is never destroyed: its workers must not be joined during interpreter teardown (a
// daemon thread may still be inside a kernel), and after fork() it is abandoned (below).
class Pool {
 public:
  // Returns false (and does nothing) when another thread is using the pool, or the job has
  // more chunks than a claim word counts (the caller then runs them itself).
  // With `small` (a job shorter than waking a worker takes) the job is left to the caller when no
  // worker is awake.
  bool run(int64_t n_chunks, const std::function<void(int64_t)>& chunk_fn, int threads, bool small) {
    if (n_chunks >= (int64_t{1} << 32)) return false;
    std::unique_lock<std::mutex> job_lock(job_mutex_, std::try_to_lock);
    if (!job_lock.owns_lock()) return false;
    ensure_workers(threads - 1);
    if (small) {
      std::lock_guard<std::mutex> lk(m_);
      if (sleepers_ == static_cast<int>(workers_.size())) return false;
    }
    const uint64_t gen = ++generation_ & 0xffffffffu;
    job_.store(&chunk_fn, std::memory_order_relaxed);
    caller_cpu_.store(current_cpu(), std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    claim_.store(gen << 32, std::memory_order_relaxed);
    const uint64_t limit = (gen << 32) | static_cast<uint64_t>(n_chunks);
    limit_.store(limit, std::memory_order_release);  // publishes the three stores above
    bool woke = false;
    if (!small) {
      std::lock_guard<std::mutex> lk(m_);
      woke = sleepers_ > 0;
      if (woke) wake_.notify_all();
    }
    // A worker woken from sleep may be queued on this CPU (worker_loop), where it would wait for
    // the caller's time slice (1-3 ms measured): let it run now, for the moment it takes to move.
    if (woke) std::this_thread::yield();
    work(limit);
    // The chunks still running elsewhere are at most one each: spin, then let them have the CPU.
    for (int spins = 0; done_.load(std::memory_order_acquire) != n_chunks; ++spins) {
      if (spins < kSpinsBeforeYield)
        cpu_relax();
      else
        std::this_thread::yield();
    }
    return true;
  }

 private:
  static constexpr int kSpinsBeforeYield = 4000;
  // How long an idle worker polls for the next job before sleeping: a loop's next call is
  // usually sooner, and a sleeping worker's wake-up costs tens of microseconds.
  static constexpr std::chrono::microseconds kIdleSpin{50};

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }

  // Claims and runs chunks of the job `limit` names until it has none left.
  void work(uint64_t limit) {
    const uint64_t gen = limit >> 32, n = limit & 0xffffffffu;
    for (;;) {
      uint64_t s = claim_.load(std::memory_order_relaxed);
      do {
        if ((s >> 32) != gen || (s & 0xffffffffu) >= n) return;
      } while (!claim_.compare_exchange_weak(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed));
      (*job_.load(std::memory_order_relaxed))(static_cast<int64_t>(s & 0xffffffffu));
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void worker_loop(uint64_t seen) {
    CpuMove move;
    for (;;) {
      bool slept = false;
      uint64_t limit = limit_.load(std::memory_order_acquire);
      const auto spin_until = std::chrono::steady_clock::now() + kIdleSpin;
      for (int i = 1; (limit >> 32) == seen && !quit_.load(std::memory_order_relaxed); ++i) {
        cpu_relax();
        limit = limit_.load(std::memory_order_acquire);
        if (i % 64 == 0 && std::chrono::steady_clock::now() > spin_until) break;
      }
      if ((limit >> 32) == seen) {
        std::unique_lock<std::mutex> lk(m_);
        ++sleepers_;
        wake_.wait(lk, [&] {
          return quit_.load(std::memory_order_relaxed) || (limit_.load(std::memory_order_acquire) >> 32) != seen;
        });
        --sleepers_;
        limit = limit_.load(std::memory_order_acquire);
        slept = true;
      }
      if (quit_.load(std::memory_order_relaxed)) return;
      seen = limit >> 32;
      // Woken from sleep while the whole process slept, Linux puts a worker on the CPU of the
      // thread that woke it (measured here: every time after a 50 ms sleep), where it only takes
      // turns with the caller: the worker then moves itself off that CPU for this job (running
      // elsewhere ~0.15 ms after the wake-up, against 2 ms waiting there).
      const bool moved = slept && move.away_from(caller_cpu_.load(std::memory_order_relaxed));
      work(limit);
      if (moved) move.back();
    }
  }

  // Starts `want` workers, or as many as the system allows: a thread that cannot be created
  // (process or memory limits) leaves its chunks to the others and the caller. `requested_`
  // remembers what was asked, so a shortfall is not retried on every call, only when the
  // thread count changes.
  void ensure_workers(int want) {
    if (want == requested_) return;
    stop();
    quit_.store(false);
    requested_ = want;
    const uint64_t gen = limit_.load() >> 32;  // no job runs (we hold job_mutex_)
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
      quit_.store(true);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex m_;          // guards sleepers_ and the sleeping on wake_
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  int requested_ = 0;
  int sleepers_ = 0;
  uint64_t generation_ = 0;  // the last job's (its low 32 bits go into the claim words)
  std::atomic<const std::function<void(int64_t)>*> job_{nullptr};
  std::atomic<uint64_t> limit_{0}, claim_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> caller_cpu_{-1};  // the CPU the caller posted the job from (-1: unknown)
  std::atomic<bool> quit_{false};
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

// `grains`: the work in grains (parallel_for's), which decides whether sleeping workers are worth
// waking: a worker woken from sleep runs ~0.15 ms later (median here; 0.7 ms at the 90th
// percentile), so work of fewer than kWakeGrains grains (~0.1-0.5 ms) is left to the caller and
// the workers awake, if any, unless it comes within kLoopGap of the previous job's end: a loop's
// next call, for which the woken workers are then awake (they poll between its calls).
constexpr int64_t kWakeGrains = 4;
constexpr std::chrono::microseconds kLoopGap{1000};
std::atomic<int64_t> g_last_job_end{0};  // steady_clock ticks

void run_chunks(int64_t n_chunks, int64_t grains, const std::function<void(int64_t)>& chunk_fn) {
  const int threads = get_num_threads();
  if (n_chunks > 1 && threads > 1) {
    using clock = std::chrono::steady_clock;
    const auto since_last = clock::now() - clock::time_point(clock::duration(g_last_job_end.load()));
    const bool small = grains < kWakeGrains && since_last > kLoopGap;
    if (!pool().run(n_chunks, chunk_fn, threads, small))
      for (int64_t c = 0; c < n_chunks; ++c) chunk_fn(c);
    g_last_job_end.store(clock::now().time_since_epoch().count());
    return;
  }
  for (int64_t c = 0; c < n_chunks; ++c) chunk_fn(c);
}

}  // namespace

void set_num_threads(int n) { g_num_threads.store(std::clamp(n, 1, kMaxThreads)); }

int get_num_threads() { return g_num_threads.load(); }

int64_t grain_for(int64_t work_per_item, int64_t target_work) {
  return std::max<int64_t>(1, target_work / std::max<int64_t>(1, work_per_item));
}

int64_t row_grain(int64_t cols) { return std::max<int64_t>(4, grain_for(cols + 16)); }

namespace {

// How [0, n) is cut: into ceil(n / grain) chunks (so none exceeds the grain); work of more than one
// grain into at least kMinChunks (chunks down to a quarter grain): a worker woken from sleep joins
// late (measured here: ~0.1 ms), and the chunk it takes last is what the caller waits for, so small
// chunks keep a medium job from running slower on 2 threads than on 1. A small count is rounded up
// to a multiple of 4 (so 2 or 4 threads share it evenly), all of one size but the last. Depends on
// n and the grain only, never on the thread count.
constexpr int64_t kMinChunks = 16;
struct Chunking {
  int64_t size, count, grains;
  Chunking(int64_t n, int64_t grain) {
    grain = std::max<int64_t>(1, grain);
    count = grains = (n + grain - 1) / grain;
    if (count > 1) {
      const int64_t quarter = std::max<int64_t>(1, grain / 4);
      count = std::max(count, std::min(kMinChunks, (n + quarter - 1) / quarter));
    }
    if (count > 1 && count < 64) count = std::min(n, (count + 3) / 4 * 4);
    size = (n + count - 1) / count;
    count = (n + size - 1) / size;
  }
};

}  // namespace

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const Chunking c(n, grain);
  if (c.count == 1) {
    fn(0, n);
    return;
  }
  run_chunks(c.count, c.grains, [&](int64_t i) { fn(i * c.size, std::min(n, (i + 1) * c.size)); });
}

void parallel_reduce(int64_t n, int64_t grain, int k, const std::function<void(int64_t, int64_t, double*)>& fn,
                     double* out) {
  std::fill(out, out + k, 0.0);
  if (n <= 0) return;
  const Chunking ch(n, grain);
  if (ch.count == 1) {
    fn(0, n, out);
    return;
  }
  const int64_t n_chunks = ch.count;
  std::vector<double> partial(static_cast<size_t>(n_chunks * k), 0.0);
  run_chunks(n_chunks, ch.grains,
             [&](int64_t c) { fn(c * ch.size, std::min(n, (c + 1) * ch.size), partial.data() + c * k); });
  for (int64_t c = 0; c < n_chunks; ++c)
    for (int j = 0; j < k; ++j) out[j] += partial[static_cast<size_t>(c * k + j)];
}

}  // namespace logitops
