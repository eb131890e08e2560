// A caching allocator for large CPU tensors, switched on and off at run time.
//
// A search step allocates and frees tens of GB of activations and gradients, nearly all of
// them the same few sizes every step. glibc's heap serves them from memory it keeps after
// frees, but in a different arrangement each pass: the step's resident memory ends up about
// 1-2 GB above what is live (fragmentation), and every page is a 4 KiB page. This allocator
// keeps freed blocks of 1 MiB and more in per-size free lists and hands them out again
// (last freed first: the one most likely still in cache), maps blocks of 2 MiB and more
// 2 MiB-aligned with transparent huge pages asked for, and gives everything it keeps back to
// the system when it is switched off. Smaller requests go to the allocator it replaced.
//
// Blocks are identified by their address (the DataPtr's context is the data pointer), so
// raw_allocate / raw_deallocate work as with PyTorch's default CPU allocator.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kMinCached = size_t(1) << 20;  // smaller requests: the previous allocator
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kMinSlack = size_t(256) << 20;  // free bytes kept before evicting

// Size classes: n rounded up to 1/8 of its power of two (at most 12.5 % more), 64 KiB at least.
size_t size_class(size_t n) {
  size_t top = size_t(1) << (63 - __builtin_clzll(n));
  size_t step = top / 8 < (size_t(64) << 10) ? (size_t(64) << 10) : top / 8;
  return (n + step - 1) / step * step;
}

class CachingCPUAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < kMinCached) {
      return previous_->allocate(n);
    }
    size_t size = size_class(n);
    void* ptr = nullptr;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        ptr = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        ++hits_;
      }
    }
    if (ptr == nullptr) {
      evict_for(size);
      ptr = map_block(size);
      if (ptr == nullptr) {  // out of memory: give back what is cached and try once more
        release_cached();
        ptr = map_block(size);
      }
      TORCH_CHECK_WITH(OutOfMemoryError, ptr != nullptr,
                       "nasspeech CPU cache: could not map ", size, " bytes");
    }
    size_t allocated, reserved;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      live_[ptr] = size;
      allocated_ += size;
      allocated = allocated_;
      reserved = reserved_;
    }
    if (c10::memoryProfilingEnabled()) {
      c10::reportMemoryUsageToProfiler(ptr, static_cast<int64_t>(size), allocated, reserved,
                                       c10::Device(c10::DeviceType::CPU));
    }
    return {ptr, ptr, &free_ptr, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &free_ptr; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  // Frees (or caches) a block; pointers this allocator did not map go to the previous one.
  static void free_ptr(void* ptr) { instance().release(ptr); }

  static CachingCPUAllocator& instance() {
    static auto* allocator = new CachingCPUAllocator();  // never destroyed: tensors may outlive exit
    return *allocator;
  }

  // Installs this allocator as the CPU allocator (on) or puts the previous one back (off,
  // giving back every cached block). Returns whether it was installed before.
  bool set_enabled(bool on) {
    std::lock_guard<std::mutex> switching(switch_mutex_);
    bool was;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      was = enabled_;
    }
    if (on && !was) {
      c10::Allocator* current = c10::GetCPUAllocator();
      if (current != this) previous_ = current;
      set_flag(true);
      c10::SetCPUAllocator(this, /*priority=*/UINT8_MAX);
    } else if (!on && was) {
      c10::SetCPUAllocator(previous_, /*priority=*/UINT8_MAX);
      set_flag(false);  // blocks freed from now on are unmapped, not cached
      release_cached();
    }
    return was;
  }

  void set_flag(bool on) {
    std::lock_guard<std::mutex> guard(mutex_);
    enabled_ = on;
  }

  // Unmaps every cached (free) block; returns the bytes given back.
  size_t release_cached() {
    std::vector<std::pair<void*, size_t>> blocks;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      for (auto& [size, ptrs] : free_) {
        for (void* p : ptrs) blocks.emplace_back(p, size);
      }
      free_.clear();
      reserved_ -= cached_;
      cached_ = 0;
    }
    size_t total = 0;
    for (auto& [p, size] : blocks) {
      munmap(p, size);
      total += size;
    }
    return total;
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> guard(mutex_);
    return {enabled_ ? 1 : 0, static_cast<int64_t>(allocated_), static_cast<int64_t>(reserved_),
            static_cast<int64_t>(cached_), static_cast<int64_t>(peak_reserved_),
            static_cast<int64_t>(hits_), static_cast<int64_t>(misses_), evictions_};
  }

  void reset_peak() {
    std::lock_guard<std::mutex> guard(mutex_);
    peak_reserved_ = reserved_;
  }

 private:
  CachingCPUAllocator() : previous_(c10::GetDefaultCPUAllocator()) {}

  // Before a new mapping of `size` bytes: where the free blocks (of other sizes) exceed a
  // slack of an eighth of the mapped total (256 MiB at least), unmaps them down to the slack
  // or by `size` bytes, whichever is less (the classes holding most first). So when the
  // sizes requested change (another batch size, evaluation), the cache does not keep the old
  // sizes on top of the new ones. The slack keeps a repeating step from trading blocks back
  // and forth: the yardstick step keeps 8 % of its blocks free at its peak and, with the
  // slack, maps nothing after its first step.
  void evict_for(size_t size) {
    std::vector<std::pair<void*, size_t>> blocks;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      size_t slack = reserved_ / 8 > kMinSlack ? reserved_ / 8 : kMinSlack;
      size_t freed = 0;
      while (freed < size && cached_ > slack) {
        std::vector<void*>* fullest = nullptr;
        size_t fullest_bytes = 0, fullest_size = 0;
        for (auto& [s, ptrs] : free_) {
          if (s * ptrs.size() > fullest_bytes) {
            fullest = &ptrs;
            fullest_bytes = s * ptrs.size();
            fullest_size = s;
          }
        }
        if (fullest == nullptr) break;
        blocks.emplace_back(fullest->back(), fullest_size);
        fullest->pop_back();
        cached_ -= fullest_size;
        reserved_ -= fullest_size;
        freed += fullest_size;
        ++evictions_;
      }
    }
    for (auto& [p, s] : blocks) munmap(p, s);
  }

  // A fresh 2 MiB-aligned anonymous mapping of `size` bytes (huge pages asked for), or null.
  void* map_block(size_t size) {
    size_t span = size >= kHugePage ? size + kHugePage : size;  // room to align huge blocks
    void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    auto start = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned = size >= kHugePage ? (start + kHugePage - 1) & ~(kHugePage - 1) : start;
    if (aligned > start) munmap(raw, aligned - start);
    uintptr_t end = start + span, used_end = aligned + size;
    if (end > used_end) munmap(reinterpret_cast<void*>(used_end), end - used_end);
#ifdef MADV_HUGEPAGE
    if (size >= kHugePage) madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);
#endif
    std::lock_guard<std::mutex> guard(mutex_);
    reserved_ += size;
    ++misses_;
    if (reserved_ > peak_reserved_) peak_reserved_ = reserved_;
    return reinterpret_cast<void*>(aligned);
  }

  void release(void* ptr) {
    if (ptr == nullptr) return;
    size_t size = 0, allocated = 0, reserved = 0;
    bool unmap = false;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      auto it = live_.find(ptr);
      if (it == live_.end()) {
        size = 0;
      } else {
        size = it->second;
        live_.erase(it);
        allocated_ -= size;
        if (enabled_) {
          free_[size].push_back(ptr);
          cached_ += size;
        } else {
          reserved_ -= size;
          unmap = true;
        }
        allocated = allocated_;
        reserved = reserved_;
      }
    }
    if (size == 0) {  // not ours: a small block of the previous allocator (raw path)
      c10::DeleterFnPtr deleter = previous_->raw_deleter();
      TORCH_CHECK(deleter != nullptr, "nasspeech CPU cache: cannot free a foreign pointer");
      deleter(ptr);
      return;
    }
    if (unmap) munmap(ptr, size);
    if (c10::memoryProfilingEnabled()) {
      c10::reportMemoryUsageToProfiler(ptr, -static_cast<int64_t>(size), allocated, reserved,
                                       c10::Device(c10::DeviceType::CPU));
    }
  }

  std::mutex switch_mutex_;
  std::mutex mutex_;
  c10::Allocator* previous_;
  bool enabled_ = false;
  std::unordered_map<void*, size_t> live_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t allocated_ = 0, reserved_ = 0, cached_ = 0, peak_reserved_ = 0;
  int64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

bool cpu_cache_set_enabled(bool on) { return CachingCPUAllocator::instance().set_enabled(on); }

int64_t cpu_cache_release() {
  return static_cast<int64_t>(CachingCPUAllocator::instance().release_cached());
}

std::vector<int64_t> cpu_cache_stats() { return CachingCPUAllocator::instance().stats(); }

void cpu_cache_reset_peak() { CachingCPUAllocator::instance().reset_peak(); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(nasspeech, m) {
  // no tensor arguments: registered for every dispatch key (catch-all)
  m.def("cpu_cache_set_enabled(bool on) -> bool", &cpu_cache_set_enabled);
  m.def("cpu_cache_release() -> int", &cpu_cache_release);
  m.def("cpu_cache_stats() -> int[]", &cpu_cache_stats);
  m.def("cpu_cache_reset_peak() -> ()", &cpu_cache_reset_peak);
}
