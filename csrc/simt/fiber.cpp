// Fiber stacks and the context switch (see fiber.h).
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <new>

#if defined(__x86_64__)
extern "C" {
// moe_simt_switch(void** save_sp, void* new_sp): push the System V callee-saved registers and
// the SSE/x87 control words, store rsp to *save_sp, load new_sp, pop, return into the new fiber.
void moe_simt_switch(void** save_sp, void* new_sp);
// First code a fresh fiber runs: rbx holds its argument and r12 its entry function.
void moe_simt_trampoline();
}

asm(R"(
    .text
    .globl moe_simt_switch
    .type moe_simt_switch, @function
moe_simt_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size moe_simt_switch, .-moe_simt_switch

    .globl moe_simt_trampoline
    .type moe_simt_trampoline, @function
moe_simt_trampoline:
    movq %rbx, %rdi
    callq *%r12
    ud2
    .size moe_simt_trampoline, .-moe_simt_trampoline
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

namespace moe_simt {

FiberStack::FiberStack(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_ = (bytes + page - 1) / page * page;
  mapped_ = size_ + page;
  void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  mapping_ = static_cast<char*>(p);
  mprotect(mapping_, page, PROT_NONE);  // guard page below the stack
  base_ = mapping_ + page;
}

FiberStack::~FiberStack() {
  if (mapping_) munmap(mapping_, mapped_);
}

#if defined(__x86_64__)

void fiber_init(FiberContext& ctx, FiberStack& stack, FiberEntry entry, void* arg) {
  // Stack image popped by moe_simt_switch: [mxcsr|fpucw] r15 r14 r13 r12 rbx rbp ret-address.
  // After `ret` pops the trampoline address rsp must be 16-byte aligned, so that the `call`
  // in the trampoline leaves the entry function with the ABI's rsp % 16 == 8.
  auto top = reinterpret_cast<uintptr_t>(stack.top()) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = reinterpret_cast<uint64_t>(&moe_simt_trampoline);
  *--sp = 0;                                  // rbp
  *--sp = reinterpret_cast<uint64_t>(arg);    // rbx
  *--sp = reinterpret_cast<uint64_t>(entry);  // r12
  *--sp = 0;                                  // r13
  *--sp = 0;                                  // r14
  *--sp = 0;                                  // r15
  uint32_t csr[2];
  asm volatile("stmxcsr %0" : "=m"(csr[0]));
  asm volatile("fnstcw %0" : "=m"(csr[1]));
  *--sp = (static_cast<uint64_t>(csr[1] & 0xffff) << 32) | csr[0];
  ctx.sp = sp;
}

void fiber_switch(FiberContext& from, FiberContext& to) { moe_simt_switch(&from.sp, to.sp); }

#else

static void ucontext_entry(unsigned e_hi, unsigned e_lo, unsigned a_hi, unsigned a_lo) {
  auto entry = reinterpret_cast<FiberEntry>((uintptr_t{e_hi} << 32) | e_lo);
  entry(reinterpret_cast<void*>((uintptr_t{a_hi} << 32) | a_lo));
}

void fiber_init(FiberContext& ctx, FiberStack& stack, FiberEntry entry, void* arg) {
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = stack.base();
  ctx.uc.uc_stack.ss_size = stack.size();
  ctx.uc.uc_link = nullptr;
  // makecontext passes int arguments: split the two pointers into 32-bit halves.
  auto e = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
  makecontext(&ctx.uc, reinterpret_cast<void (*)()>(&ucontext_entry), 4,
              static_cast<unsigned>(e >> 32), static_cast<unsigned>(e),
              static_cast<unsigned>(a >> 32), static_cast<unsigned>(a));
}

void fiber_switch(FiberContext& from, FiberContext& to) { swapcontext(&from.uc, &to.uc); }

#endif

}  // namespace moe_simt
