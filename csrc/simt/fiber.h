// Fibers: cooperative user-space threads, one per emulated CUDA thread.
//
// A block's threads run as fibers on one host thread; a fiber runs until it reaches a barrier,
// a warp collective or its end, then switches back to the block scheduler. On x86-64 the switch
// is a hand-written save/restore of the callee-saved registers (~10 ns; ucontext's swapcontext
// costs ~200 ns because it also saves the signal mask with a syscall, and a block of 128
// threads switches twice per thread per barrier). Other architectures use ucontext.
#pragma once

#include <cstddef>
#include <cstdint>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace moe_simt {

using FiberEntry = void (*)(void* arg);

// A stack region for fibers, with an inaccessible guard page below it so an overflow faults
// instead of silently corrupting a neighbouring fiber.
class FiberStack {
 public:
  explicit FiberStack(size_t bytes);
  ~FiberStack();
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;
  char* base() const { return base_; }
  size_t size() const { return size_; }
  char* top() const { return base_ + size_; }

 private:
  char* mapping_ = nullptr;
  char* base_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;
};

struct FiberContext {
#if defined(__x86_64__)
  void* sp = nullptr;  // saved stack pointer; registers live on the fiber's stack
#else
  ucontext_t uc;
#endif
};

// Prepares `ctx` so that the first switch to it calls entry(arg) on `stack`. entry must never
// return: a finished fiber switches away for the last time.
void fiber_init(FiberContext& ctx, FiberStack& stack, FiberEntry entry, void* arg);

// Saves the current context into `from` and resumes `to`.
void fiber_switch(FiberContext& from, FiberContext& to);

}  // namespace moe_simt
