#include "result_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <pthread.h>

namespace logitops {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;
// Idle buffers kept at most (the oldest goes first): a fixed array, so that keeping and
// evicting never allocate, and a search over it costs nothing beside a large call.
constexpr size_t kMaxIdle = 32;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// The mapped size of a buffer for `bytes`: whole pages, whole huge pages from kHugeBytes on.
size_t capacity_for(size_t bytes) {
  return bytes >= kHugeBytes ? round_up(bytes, kHugePage) : round_up(std::max<size_t>(bytes, 1), kPage);
}

void* map_buffer(size_t capacity) {
  if (capacity < kHugeBytes) {
    void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  // Over-map by one huge page and trim both ends, so the buffer starts on a 2 MB boundary
  // (transparent huge pages back only aligned 2 MB ranges).
  const size_t span = capacity + kHugePage;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = round_up(start, kHugePage);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + span, used_end = aligned + capacity;
  if (end > used_end) munmap(reinterpret_cast<void*>(used_end), end - used_end);
  void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  madvise(p, capacity, MADV_HUGEPAGE);  // advice only: refused (THP off) is fine
#endif
  return p;
}

// A byte count: decimal digits, then optionally K, M or G (KiB, MiB, GiB), surrounding
// whitespace allowed. False for anything else (signs, fractions, overflow).
bool parse_bytes(const char* s, size_t* out) {
  while (std::isspace(static_cast<unsigned char>(*s))) ++s;
  if (!std::isdigit(static_cast<unsigned char>(*s))) return false;
  unsigned long long n = 0;
  for (; std::isdigit(static_cast<unsigned char>(*s)); ++s) {
    if (n > (~0ULL >> 4) / 10) return false;
    n = n * 10 + static_cast<unsigned>(*s - '0');
  }
  const int unit = std::toupper(static_cast<unsigned char>(*s));
  const int shift = unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : 0;
  if (shift) ++s;
  while (std::isspace(static_cast<unsigned char>(*s))) ++s;
  if (*s != '\0' || (shift && n > (~0ULL >> (shift + 4)))) return false;
  *out = static_cast<size_t>(n << shift);
  return true;
}

size_t default_limit() {
  const char* env = std::getenv("LOGITOPS_RESULT_CACHE");
  if (!env) return kDefaultResultCacheLimit;
  const char* first = env;  // empty or blank: as if unset
  while (std::isspace(static_cast<unsigned char>(*first))) ++first;
  if (*first == '\0') return kDefaultResultCacheLimit;
  size_t n = 0;
  if (parse_bytes(env, &n)) return n;
  std::fprintf(stderr,
               "logitops: ignoring LOGITOPS_RESULT_CACHE='%.40s' (not a byte count such as 0, 268435456 "
               "or 256M); keeping at most %zu MiB of result buffers\n",
               env, kDefaultResultCacheLimit >> 20);
  return kDefaultResultCacheLimit;
}

struct Idle {
  void* p;
  size_t capacity;
};

// Never destroyed: arrays freed during interpreter teardown (after static destructors may
// have run) still give their buffers back here.
struct Cache {
  std::mutex m;
  std::array<Idle, kMaxIdle> idle{};  // oldest first
  size_t count = 0, bytes = 0;
  size_t limit = default_limit();
  uint64_t hits = 0, misses = 0;

  void remove(size_t i) {
    bytes -= idle[i].capacity;
    std::copy(idle.begin() + static_cast<std::ptrdiff_t>(i + 1), idle.begin() + static_cast<std::ptrdiff_t>(count),
              idle.begin() + static_cast<std::ptrdiff_t>(i));
    --count;
  }
  // Moves the oldest idle buffers into `victims` until at most `keep_bytes` stay; returns how
  // many moved (at most kMaxIdle).
  size_t evict_to(size_t keep_bytes, Idle* victims) {
    size_t n = 0;
    while (count && bytes > keep_bytes) {
      victims[n++] = idle[0];
      remove(0);
    }
    return n;
  }
};

Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

void unmap_all(const std::array<Idle, kMaxIdle + 1>& victims, size_t n) {
  for (size_t i = 0; i < n; ++i) munmap(victims[i].p, victims[i].capacity);
}

// fork(): hold the mutex across it (no other thread is then inside the cache), and in the child
// drop the copies of the idle buffers (see the header).
void before_fork() { cache().m.lock(); }
void after_fork_parent() { cache().m.unlock(); }
void after_fork_child() {
  Cache& c = cache();
  for (size_t i = 0; i < c.count; ++i) munmap(c.idle[i].p, c.idle[i].capacity);
  c.count = c.bytes = 0;
  c.m.unlock();
}
[[maybe_unused]] const int g_atfork_registered = [] {
  cache();  // made before any fork, so the handlers never construct it in between
  return pthread_atfork(&before_fork, &after_fork_parent, &after_fork_child);
}();

}  // namespace

void* result_acquire(size_t bytes, size_t* capacity) {
  Cache& c = cache();
  const size_t want = capacity_for(bytes);
  {
    std::lock_guard<std::mutex> lk(c.m);
    if (c.limit == 0) return nullptr;
    // The smallest idle buffer that holds `want` and wastes at most a quarter of it; the most
    // recently kept among equals (its pages are the likeliest still in cache).
    size_t best = c.count;
    for (size_t i = c.count; i-- > 0;) {
      const size_t cap = c.idle[i].capacity;
      if (cap >= want && cap - want <= want / 4 && (best == c.count || cap < c.idle[best].capacity)) best = i;
    }
    if (best != c.count) {
      void* p = c.idle[best].p;
      *capacity = c.idle[best].capacity;
      c.remove(best);
      ++c.hits;
      return p;
    }
    ++c.misses;
  }
  void* p = map_buffer(want);
  *capacity = want;
  return p;
}

void result_release(void* p, size_t capacity) noexcept {
  if (!p) return;
  Cache& c = cache();
  std::array<Idle, kMaxIdle + 1> victims;
  size_t n = 0;
  {
    std::lock_guard<std::mutex> lk(c.m);
    if (capacity <= c.limit) {
      if (c.count == kMaxIdle) {
        victims[n++] = c.idle[0];
        c.remove(0);
      }
      c.idle[c.count++] = {p, capacity};
      c.bytes += capacity;
      n += c.evict_to(c.limit, victims.data() + n);
      p = nullptr;
    }
  }
  if (p) munmap(p, capacity);
  unmap_all(victims, n);
}

void set_result_cache_limit(size_t bytes) {
  Cache& c = cache();
  std::array<Idle, kMaxIdle + 1> victims;
  size_t n;
  {
    std::lock_guard<std::mutex> lk(c.m);
    c.limit = bytes;
    n = c.evict_to(bytes, victims.data());
  }
  unmap_all(victims, n);
}

size_t result_cache_limit() {
  std::lock_guard<std::mutex> lk(cache().m);
  return cache().limit;
}

void empty_result_cache() {
  Cache& c = cache();
  std::array<Idle, kMaxIdle + 1> victims;
  size_t n;
  {
    std::lock_guard<std::mutex> lk(c.m);
    n = c.evict_to(0, victims.data());
  }
  unmap_all(victims, n);
}

ResultCacheStats result_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.m);
  return {c.limit, c.bytes, c.count, c.hits, c.misses};
}

}  // namespace logitops
