"""The CPU SIMT emulator backend: the CUDA kernel sources run on the CPU.

Its ops are ``torch.ops.moe_ext_emu.<op>`` (CPU tensors, same schemas as ``torch.ops.moe_ext``).
Every emulated launch is checked (out-of-bounds global/shared accesses, shared-memory races,
uninitialised shared reads, deadlocks, divergent barriers, a cluster peer's shared memory touched
before the first cluster barrier or after its exit raise ``RuntimeError`` naming the kernel,
block and thread) and counted; :func:`last_launch_stats` returns the counters of the most recent
launch, so tests and benchmarks can assert on memory efficiency without a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import _C


def available() -> bool:
    """Whether this build of moe_ext includes the emulator backend."""
    return bool(_C.build_info()["emulator"])


def _require() -> None:
    if not available():
        raise RuntimeError(
            "moe_ext was built without the emulator backend (MOE_EXT_EMU=0 or no "
            "CUDA headers at build time)"
        )


def last_launch_stats() -> dict[str, int]:
    """Counters of the most recent emulated launch.

    Keys: ``global_bytes_read``, ``global_bytes_written``, ``global_requests`` (warp-level global
    memory instructions), ``global_sectors`` (distinct 32-byte sectors they touched; sectors per
    request measures coalescing: 4 is ideal for 4-byte lanes), ``shared_requests``,
    ``shared_wavefronts`` and ``bank_conflicts`` (extra wavefronts caused by bank conflicts),
    ``barriers``, ``warp_collectives`` (shuffles, votes, reductions), ``collective_instrs``
    (the SASS instructions they take: a 64-bit shuffle is two SHFL), ``mma`` (mma.sync, per warp),
    ``wgmma`` (wgmma.mma_async, per warpgroup), ``wgmma_shared_bytes`` (the operand bytes those read
    from shared memory: A and B once per instruction), ``tma_load_bytes`` (bytes non-multicast TMA
    loads wrote to shared memory), ``shared_bytes_read`` (the threads' own shared loads),
    ``tc_turn_requests`` and ``epilogue_requests`` (warp-level memory instructions of tensor-core
    warps while holding the CTA's MMA turn, and after handing it on: ``tensor_core_turn_begin/end``
    in ptx_sm90.h), ``tma_multicast_bytes`` (shared bytes delivered by multicast TMA, summed over
    the destination CTAs; the global side of each copy is read, and counted in
    ``global_bytes_read``, once), ``dsmem_bytes`` (``ld``/``st.shared::cluster`` bytes to a peer
    CTA's shared memory), ``cluster_barriers`` (``barrier.cluster`` phases completed, per
    cluster), ``fiber_switches``, ``blocks``, ``threads``.
    """
    _require()
    return dict(_C.emu_last_launch_stats())


@contextlib.contextmanager
def launch_log() -> Iterator[list[dict]]:
    """Records every emulated launch inside the ``with`` block, in launch order.

    Yields a list that is filled when the block exits: one dict per launch, the kernel's name
    under ``"kernel"`` and the counters of :func:`last_launch_stats`. For ops that run several
    kernels (``sort_tokens``' histogram, scan and scatter; a layer's forward and backward)::

        with moe_ext.emu.launch_log() as log:
            torch.ops.moe_ext_emu.sort_tokens(ids, E)
        mma = sum(launch["mma"] for launch in log)
    """
    _require()
    log: list[dict] = []
    _C.emu_start_launch_log()
    try:
        yield log
    finally:
        log.extend(dict(d) for d in _C.emu_stop_launch_log())
