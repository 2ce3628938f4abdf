// Host-side interface of the grouped GEMM (grouped_gemm.cuh): the problem description the
// binding fills from tensors, and the launchers. Torch-free.
//
// One description covers torch._grouped_mm's four forms. Group g multiplies A_g[m_g, k_g] by
// B_g[k_g, n_g] into C_g[m_g, n_g]; which extent is ragged (cut by `offs`) is the form:
//   kRaggedM  (2D x 3D)  a[M,K] @ b[G,K,N] -> c[M,N]      rows [offs[g-1], offs[g]) use b[g]
//   kRaggedN  (3D x 2D)  a[G,M,K] @ b[K,N] -> c[M,N]      columns [offs[g-1], offs[g]) use a[g]
//   kRaggedK  (2D x 2D)  a[M,K] @ b[K,N] -> c[G,M,N]      k in [offs[g-1], offs[g]) into c[g]
//   kBatched  (3D x 3D)  a[G,M,K] @ b[G,K,N] -> c[G,M,N]
// Strides are in elements. Each operand has one unit-stride dim among its two matrix dims
// (`a_k_major`: a's K is contiguous, else its M is; `b_k_major`: b's K is contiguous, else its
// N is), so both b[G,K,N] and w.transpose(-2,-1) of w[G,N,K] are read in place, and so is aᵀ.
// c is written whole: rows (kRaggedM) or columns (kRaggedN) past offs[-1] are zeros, groups with
// k_g = 0 are bias (or zeros). `offs` is read on the device only (no host sync).
#pragma once

#include <cstdint>

#include "../../common/launcher.h"
#include "../../common/portable.h"

namespace moe_ext {

struct WaitTimeoutReport;  // common/wait_timeout.h

enum class GroupedGemmForm : int32_t { kRaggedM, kRaggedN, kRaggedK, kBatched };
enum class GemmElem : int32_t { kF32, kBF16, kF16 };
// Epilogue activation, applied after the bias (and before the row scale). With `gated`, the
// GEMM computes 2n columns per row -- B's columns [0, n) ("gate") and [n, 2n) ("up") -- and
// writes act(gate) * up to c's n columns: SwiGLU (kSilu) / GeGLU (kGelu, kGeluTanh); with
// act_limit > 0 first gate = min(gate, limit), up = clamp(up, -limit, limit) (the clamped
// SwiGLU of DeepSeek-V4 and gpt-oss; NaN stays NaN, as torch.clamp).
enum class GemmActivation : int32_t { kNone, kSilu, kGelu, kGeluTanh, kRelu };

MOE_HOST_DEVICE constexpr int gemm_elem_bytes(GemmElem e) { return e == GemmElem::kF32 ? 4 : 2; }

struct GroupedGemmParams {
  GroupedGemmForm form;
  GemmElem in_type;    // a and b
  GemmElem out_type;   // c
  GemmElem bias_type;  // bias (when given)
  const void* a;
  int64_t a_stride_g, a_stride_m, a_stride_k;
  const void* b;
  int64_t b_stride_g, b_stride_k, b_stride_n;
  void* c;  // unit stride along n
  int64_t c_stride_g, c_stride_m;
  const void* bias;  // bias[g, n], unit stride along n; nullptr for none
  int64_t bias_stride_g;
  const int32_t* offs;  // [num_groups] cumulative ends; nullptr for kBatched
  int32_t num_groups;
  int64_t m, n, k;  // full extents of c's rows, c's columns and the contraction
  bool a_k_major, b_k_major;
  // Fused MoE-MLP extensions (kRaggedM, bf16/fp16 only; moe_mlp):
  const int32_t* a_gather;  // non-null: row r of A is row a_gather[r] / a_gather_div of a
  int32_t a_gather_div;     //   (x[T, H] read through the sorted order; an entry < 0 or
                            //   >= M is a zero row)
  // moe_mlp's backward (kRaggedK, bf16/fp16, B stored rows k): row k of B is row
  // b_gather[k] / b_gather_div of b (x[T, H] read through the sorted order for dW1 = dhᵀ x[order /
  // k], no gathered copy); an entry outside [0, b_gather_div * b_gather_rows) is a zero row.
  const int32_t* b_gather;
  int32_t b_gather_div;
  int64_t b_gather_rows;
  GemmActivation activation;
  bool gated;             // see GemmActivation; needs a_k_major
  float act_limit;        // gated only: > 0 clamps gate and up first (see GemmActivation)
  const void* row_scale;  // non-null: c row r *= row_scale[row_scale_index[r]] ([M]; an
                          //   index outside [0, M) scales by 0)
  const int32_t* row_scale_index;
  GemmElem row_scale_type;
  int32_t config;  // tile config (GemmConfigId); kGemmConfigAuto: by heuristic
  int32_t stages;  // cp.async pipeline depth 2..5 (tensor-core kernel); 0: by smem
  int32_t path;    // GemmPath: which kernel family may run it
  // Scratch of the Hopper kernel for the ragged-K form: per group the A and B tensor maps cut at
  // the group's last token, built on the device by a prologue kernel before the GEMM
  // (grouped_gemm_workspace_bytes(num_groups) bytes, 128-byte aligned). nullptr: the ragged-K
  // form takes the Ampere kernel.
  void* workspace;
  int64_t workspace_bytes;
  // Where a timed-out mbarrier wait of the Hopper kernel leaves its report (wait_timeout.h);
  // set by that kernel's launcher, not by the binding.
  WaitTimeoutReport* wait_report = nullptr;
};

// Workspace the binding allocates for a ragged-K grouped GEMM that may run on the Hopper kernel:
// two 128-byte tensor maps per group.
constexpr int64_t kGroupedGemmWorkspacePerGroup = 2 * 128;
MOE_HOST_DEVICE constexpr int64_t grouped_gemm_workspace_bytes(int64_t num_groups) {
  return num_groups * kGroupedGemmWorkspacePerGroup;
}

// kGemmPathAuto: the Hopper kernel (hopper.cuh) on sm_90 where it applies, else the Ampere one;
// kGemmPathSm80: always the Ampere kernels; kGemmPathSm90: the Hopper kernel or an error.
// (MOE_EXT_GEMM_PATH=auto|sm80|sm90 in the environment, read by the binding.)
enum GemmPath : int32_t { kGemmPathAuto = 0, kGemmPathSm80 = 80, kGemmPathSm90 = 90 };

// Tile configurations (bf16/fp16). kAuto lets the launcher choose. The binding takes overrides
// from the environment (MOE_EXT_GEMM_CONFIG=large|small_m|swap_ab|sm90|sm90_cluster,
// MOE_EXT_GEMM_STAGES=2..5), for tests and the tuning script. The first three are the Ampere
// tensor-core kernel's; the sm90 ones the Hopper kernel's (hopper.cuh), run where it takes the
// problem (elsewhere the Ampere kernel's heuristic config runs, unless MOE_EXT_GEMM_PATH=sm90).
enum GemmConfigId : int32_t {
  kGemmConfigAuto = -1,
  kGemmConfigLarge = 0,
  kGemmConfigSmallM = 1,
  kGemmConfigSwapAb = 2,       // decode: the weights on the MMA's M side (tensor_core.cuh)
  kGemmConfigSm90 = 3,         // Hopper: one CTA per 128 x 128 tile, ping-pong warpgroups
  kGemmConfigSm90Cluster = 4,  // Hopper: the same in 2x2 clusters multicasting A and B
};

// The groups the rows are split into (ragged M; 1 for the other forms): the heuristics compare
// p.m with a per-group row count times this, the mean known on the host without reading offs.
inline int64_t row_groups(const GroupedGemmParams& p) {
  return p.form == GroupedGemmForm::kRaggedM ? (p.num_groups > 1 ? p.num_groups : 1) : 1;
}

MOE_HOST_DEVICE constexpr bool is_sm90_config(int32_t c) {
  return c == kGemmConfigSm90 || c == kGemmConfigSm90Cluster;
}

// Whether the Hopper kernel's auto choice is the 2x2 cluster (sm90_cluster.cuh): it halves the
// operand bytes read from L2 per FLOP, but a 2x2 block at a group's edge with an odd tile count
// has phantom CTAs (no output), so it needs >= 4 m-tiles per group on average (<= 1 phantom
// row pair in 5 or more) and >= 2 n-tiles. Model-based until a GPU session measures it (the
// tuning table can override per shape).
constexpr int64_t kSm90ClusterMinRowsPerGroup = 4 * 128;
inline bool sm90_cluster_pays(const GroupedGemmParams& p) {
  const int64_t groups = row_groups(p);
  const int64_t tile_n = p.gated ? 64 : 128;
  return p.m >= kSm90ClusterMinRowsPerGroup * groups && p.n >= 2 * tile_n;
}

// Rows per group (the mean, known on the host without reading offs) up to which the heuristic
// picks swap-AB (<= 16: one 16-token tile, the MMA's N side), then small_m (<= 48).
constexpr int64_t kSwapAbMaxRowsPerGroup = 16, kSmallMMaxRowsPerGroup = 48;

// The tile config the launcher's heuristic picks for a bf16/fp16 problem (kGemmConfigAuto).
// Swap-AB needs a K-major A; it runs ahead of the Hopper kernel too, whose 128-row wgmma tiles
// would be >= 7/8 padding at decode sizes.
inline int32_t heuristic_gemm_config(const GroupedGemmParams& p) {
  const int64_t groups = row_groups(p);
  if (p.a_k_major && p.m <= kSwapAbMaxRowsPerGroup * groups) return kGemmConfigSwapAb;
  return p.m <= kSmallMMaxRowsPerGroup * groups ? kGemmConfigSmallM : kGemmConfigLarge;
}

// nullptr when launch_grouped_gemm takes the problem, else why not (the launcher returns
// cudaErrorInvalidValue for the same problems).
inline const char* can_implement(const GroupedGemmParams& p) {
  const bool fused = p.a_gather != nullptr || p.gated || p.row_scale != nullptr;
  if (fused && (p.form != GroupedGemmForm::kRaggedM || p.in_type == GemmElem::kF32))
    return "the fused-MLP extensions (gather, gated activation, row scale) need the ragged-M form "
           "in bfloat16 or float16";
  if (p.a_gather != nullptr && (!p.a_k_major || p.a_gather_div <= 0))
    return "a gathered A must be K-major with a positive gather divisor";
  if (p.b_gather != nullptr && (p.form != GroupedGemmForm::kRaggedK ||
                                p.in_type == GemmElem::kF32 || p.b_k_major || p.b_gather_div <= 0))
    return "a gathered B needs the ragged-K form in bfloat16 or float16, rows k, a positive "
           "gather divisor";
  return nullptr;
}

// The grouped GEMM (grouped_gemm.cuh: the Hopper kernel where it applies, else the Ampere
// tensor-core or the fp32 SIMT kernel) on `stream` (kCuda) or the emulator (kEmu).
template <Target T>
cudaError_t launch_grouped_gemm(const GroupedGemmParams& p, cudaStream_t stream);

// Whether the current device runs the Hopper kernel family (sm_90 with the sm_90a build; the
// emulator models one): the bindings then keep operands in layouts its TMA loads can read (a
// gathered B would send the problem to the Ampere kernel).
template <Target T>
bool grouped_gemm_on_sm90();

// The Hopper kernel alone (built only for sm_90a); cudaErrorNotSupported where it does not apply.
namespace cuda {
cudaError_t launch_grouped_gemm_sm90(const GroupedGemmParams& p, cudaStream_t stream);
}
namespace emu {
cudaError_t launch_grouped_gemm_sm90(const GroupedGemmParams& p, cudaStream_t stream);
}

}  // namespace moe_ext
