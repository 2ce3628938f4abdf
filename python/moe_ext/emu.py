"""The CPU SIMT emulator backend: the CUDA kernel sources run on the CPU.

Its ops are ``torch.ops.moe_ext_emu.<op>`` (CPU tensors, same schemas as ``torch.ops.moe_ext``).
Every emulated launch is checked (out-of-bounds global/shared accesses, shared-memory races,
uninitialised shared reads, deadlocks, divergent barriers raise ``RuntimeError`` naming the kernel,
block and thread) and counted; :func:`last_launch_stats` returns the counters of the most recent
launch, so tests and benchmarks can assert on memory efficiency without a GPU.
"""

from __future__ import annotations

from . import _C


def available() -> bool:
    """Whether this build of moe_ext includes the emulator backend."""
    return bool(_C.build_info()["emulator"])


def last_launch_stats() -> dict[str, int]:
    """Counters of the most recent emulated launch.

    Keys: ``global_bytes_read``, ``global_bytes_written``, ``global_requests`` (warp-level global
    memory instructions), ``global_sectors`` (distinct 32-byte sectors they touched; sectors per
    request measures coalescing: 4 is ideal for 4-byte lanes), ``shared_requests``,
    ``shared_wavefronts`` and ``bank_conflicts`` (extra wavefronts caused by bank conflicts),
    ``barriers``, ``warp_collectives``, ``mma``, ``fiber_switches``, ``blocks``, ``threads``.
    """
    if not available():
        raise RuntimeError(
            "moe_ext was built without the emulator backend (MOE_EXT_EMU=0 or no "
            "CUDA headers at build time)"
        )
    return dict(_C.emu_last_launch_stats())
