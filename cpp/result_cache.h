// Memory for large result arrays, recycled.
//
// A call without out= returns a new array; for a large one, fresh memory costs page faults and
// the kernel's zeroing of every page, as much as the computation itself on a memory-bound call.
// Results from kResultCacheMinBytes on are therefore mapped here (page-aligned, 2 MB-aligned
// with MADV_HUGEPAGE from kHugeBytes on, where the OS allows) and, when NumPy frees the array
// (bind/common.h: its base is a capsule whose destructor calls result_release), kept for the
// next call of about that size instead of being unmapped. The bytes kept idle are bounded by a
// limit (LOGITOPS_RESULT_CACHE, set_result_cache_limit; 0: nothing is kept); the oldest idle
// buffers are unmapped first. Memory still owned by an array is never counted or touched.
//
// A recycled buffer is not zeroed: every kernel writes every element of its outputs.
// Thread-safe (one mutex, never held across a system call that maps or unmaps). Fork-safe: the
// mutex is held across fork(), so the child's copy of the cache is consistent; the child unmaps
// its copies of the idle buffers (shared copy-on-write with the parent, they would cost the
// child a copy per page on reuse and the parent one per page it writes while the child lives).
#pragma once

#include <cstddef>
#include <cstdint>

namespace logitops {

constexpr size_t kResultCacheMinBytes = size_t{1} << 17;  // smaller results: NumPy's allocator
constexpr size_t kHugeBytes = size_t{1} << 22;            // from here: 2 MB-aligned, MADV_HUGEPAGE

// A buffer of at least `bytes`; its mapped size (to give back to result_release) in *capacity.
// Null when the limit is 0 (the caller then allocates as usual) or the system has no memory.
void* result_acquire(size_t bytes, size_t* capacity);
// Gives back a buffer of result_acquire: kept for reuse within the limit, else unmapped.
void result_release(void* p, size_t capacity) noexcept;

// LOGITOPS_RESULT_CACHE (bytes, or with a K/M/G suffix for KiB/MiB/GiB; read at load), else
// kDefaultResultCacheLimit. Lowering the limit unmaps idle buffers beyond it at once.
constexpr size_t kDefaultResultCacheLimit = size_t{256} << 20;
void set_result_cache_limit(size_t bytes);
size_t result_cache_limit();
void empty_result_cache();  // unmaps every idle buffer

struct ResultCacheStats {
  size_t limit, idle_bytes, idle_buffers;
  uint64_t hits, misses;  // result_acquire calls served from the cache / by a new mapping
};
ResultCacheStats result_cache_stats();

}  // namespace logitops
