#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace logitops {
namespace {

int default_threads() {
  if (const char* env = std::getenv("LOGITOPS_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return std::min(n, 1024);  // the cap set_num_threads applies too
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

std::atomic<int> g_num_threads{0};

// Workers sleep on `wake` until a new job generation is posted, take chunks from `next`
// until none are left, and report through `busy`. The caller works on the same job.
class Pool {
 public:
  ~Pool() { stop(); }

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

  void ensure_workers(int want) {
    // A forked child inherits the pool object but not its threads: start afresh.
    if (owner_pid_ != getpid()) {
      // Their handles are meaningless here; leak them rather than join or detach.
      new std::vector<std::thread>(std::move(workers_));
      workers_.clear();
      owner_pid_ = getpid();
    }
    if (static_cast<int>(workers_.size()) == want) return;
    stop();
    quit_ = false;
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lk(m_);
      gen = generation_;
    }
    for (int i = 0; i < want; ++i) workers_.emplace_back([this, gen] { worker_loop(gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t n_chunks_ = 0;
  std::atomic<int64_t> next_{0};
  int busy_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
  pid_t owner_pid_ = getpid();
};

Pool& pool() {
  // Never destroyed: worker threads must not be joined during interpreter teardown.
  static Pool* p = new Pool();
  return *p;
}

void run_chunks(int64_t n_chunks, const std::function<void(int64_t)>& chunk_fn) {
  const int threads = get_num_threads();
  if (n_chunks > 1 && threads > 1 && pool().run(n_chunks, chunk_fn, threads)) return;
  for (int64_t c = 0; c < n_chunks; ++c) chunk_fn(c);
}

}  // namespace

void set_num_threads(int n) { g_num_threads.store(n < 1 ? 1 : n); }

int get_num_threads() {
  int n = g_num_threads.load();
  if (n == 0) {
    n = default_threads();
    int expected = 0;
    g_num_threads.compare_exchange_strong(expected, n);
    n = g_num_threads.load();
  }
  return n;
}

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

void parallel_reduce(int64_t n, int64_t grain, int k,
                     const std::function<void(int64_t, int64_t, double*)>& fn, double* out) {
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
