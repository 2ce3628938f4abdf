// The report a bounded device wait leaves when it times out (ptx_sm90.h: mbarrier_wait).
//
// A trapped kernel poisons its CUDA context, so nothing in device memory can be read afterwards.
// The report therefore goes to one page-locked, device-mapped host buffer per process
// (wait_timeout_report_buffer(), allocated at the first launch that needs it, never during a
// stream capture: a launch captured before any eager launch simply reports nothing and still
// traps). The winning thread writes the record with volatile stores and a system fence, then
// traps; the host reads it with wait_timeout_report_text() (moe_ext._C.device_wait_timeout_report)
// whatever state the context is in.
//
// Host-side code: compiled by nvcc (the launchers) and by the C++ compiler (the Python module);
// the buffer is a function-local static of an inline function, so the whole library shares one.
#pragma once

#include <cstdint>
#include <string>

namespace moe_ext {

// Who waited: the kernel and the barrier (names in wait_site_name).
enum WaitSite : uint32_t {
  kWaitSm90ProducerEmpty = 1,     // grouped_gemm_sm90 producer, empty[stage]
  kWaitSm90ConsumerFull = 2,      // grouped_gemm_sm90 consumer, full[stage]
  kWaitTestProducerEmpty = 3,     // wgmma_gemm (test) producer, empty[stage]
  kWaitTestConsumerFull = 4,      // wgmma_gemm (test) consumer, full[stage]
  kWaitSm90ConsumerTurn = 5,      // grouped_gemm_sm90 consumer, turn[warpgroup] (ping-pong)
  kWaitTestClusterArrive = 6,     // cluster_remote_arrive_kernel (test), bar (remote arrivals)
  kWaitTestClusterMulticast = 7,  // cluster_multicast_kernel (test), full (multicast TMA)
};

inline const char* wait_site_name(uint32_t site) {
  switch (site) {
    case kWaitSm90ProducerEmpty: return "grouped_gemm_sm90_kernel producer, mbarrier empty[stage]";
    case kWaitSm90ConsumerFull: return "grouped_gemm_sm90_kernel consumer, mbarrier full[stage]";
    case kWaitTestProducerEmpty: return "wgmma_gemm_kernel producer, mbarrier empty[stage]";
    case kWaitTestConsumerFull: return "wgmma_gemm_kernel consumer, mbarrier full[stage]";
    case kWaitSm90ConsumerTurn:
      return "grouped_gemm_sm90_kernel consumer, mbarrier turn[warpgroup]";
    case kWaitTestClusterArrive: return "cluster_remote_arrive_kernel, mbarrier bar";
    case kWaitTestClusterMulticast: return "cluster_multicast_kernel, mbarrier full";
    default: return "unknown wait site";
  }
}

struct WaitTimeoutReport {
  uint32_t written;  // 1 once a timed-out thread has filled the record
  uint32_t site;     // WaitSite
  uint32_t block, thread;
  uint32_t bar;     // the mbarrier's shared-window address (identifies the stage)
  uint32_t parity;  // the phase parity waited for
  uint64_t ns;      // how long it waited
};

}  // namespace moe_ext

#if defined(__CUDACC__) || defined(MOE_EXT_WAIT_REPORT_HOST)  // nvcc launchers, the module
#include <cuda_runtime.h>

#include <sstream>

namespace moe_ext {

// Host pointer (slot 0) and device pointer (slot 1) of the process-wide report.
inline WaitTimeoutReport** wait_timeout_report_slots() {
  static WaitTimeoutReport* slots[2] = {nullptr, nullptr};
  return slots;
}

// The device pointer launchers pass to kernels with bounded waits (nullptr when it cannot be
// allocated now: then a timed-out wait traps without a report).
inline WaitTimeoutReport* wait_timeout_report_buffer(cudaStream_t stream) {
  WaitTimeoutReport** slots = wait_timeout_report_slots();
  if (slots[1] != nullptr) return slots[1];
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess ||
      capture != cudaStreamCaptureStatusNone)
    return nullptr;
  void* host = nullptr;
  if (cudaHostAlloc(&host, sizeof(WaitTimeoutReport),
                    cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess) {
    cudaGetLastError();  // not sticky; clear it so the launch's own status is reported
    return nullptr;
  }
  *static_cast<WaitTimeoutReport*>(host) = WaitTimeoutReport{};
  void* dev = nullptr;
  if (cudaHostGetDevicePointer(&dev, host, 0) != cudaSuccess) {
    cudaGetLastError();
    cudaFreeHost(host);
    return nullptr;
  }
  slots[0] = static_cast<WaitTimeoutReport*>(host);
  slots[1] = static_cast<WaitTimeoutReport*>(dev);
  return slots[1];
}

// "" when no wait has timed out in this process, else one line naming kernel, barrier, block,
// thread, phase and time.
inline std::string wait_timeout_report_text() {
  const volatile WaitTimeoutReport* r = wait_timeout_report_slots()[0];
  if (r == nullptr || r->written == 0) return "";
  std::ostringstream s;
  s << "moe_ext: a device wait timed out (a protocol slip, the kernel trapped): "
    << wait_site_name(r->site) << ", block " << r->block << ", thread " << r->thread
    << ", mbarrier at shared address 0x" << std::hex << r->bar << std::dec
    << ", waiting for phase parity " << r->parity << ", after " << r->ns / 1000000 << " ms";
  return s.str();
}

}  // namespace moe_ext
#endif
