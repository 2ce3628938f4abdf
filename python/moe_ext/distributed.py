"""Expert parallelism: all-to-all dispatch and combine over torch.distributed.

Experts are sharded evenly and contiguously over the ranks of a process group: rank r owns
experts ``[r * E / W, (r + 1) * E / W)`` (``expert_range``). Every rank routes its own tokens
(global expert ids), then

    x_local, local_offsets, handle = dispatch(x, ids, weights, num_experts, group)
    y_local = experts(x_local, local_offsets)       # any grouped computation on this rank's
                                                    # experts, rows grouped by local expert
    y = combine(y_local, handle)                    # [T, H]: sum_j weights[t, j] * y[t, j]

Built on the package's ops and on the process group's own all-to-all (NCCL on GPUs, gloo on CPU,
through the functional collective ``all_to_all_single_autograd`` so that both directions are
differentiable): dispatch sorts the assignments by global expert (``sort_tokens``; experts of one
rank are contiguous, so rows come out grouped by destination rank), gathers the rows
(``permute``), exchanges them, and sorts what arrived by local expert (a second ``sort_tokens``
over the received rows' local ids). Combine runs the same steps backwards and applies the routing
weights with ``unpermute`` (deterministic: a gather, fixed order). Gradients flow to x, weights
and the expert outputs.

Host synchronisation: the variable-size exchange needs its split sizes on the host (that is what
``all_to_all_single`` requires), so ``dispatch`` syncs once to read them: the per-destination
row counts (and, through the same exchange, the per-local-expert counts). With ``capacity``
the exchange is fixed-size -- every rank sends ``capacity`` rows per expert, zero-padded, and an
expert keeps at most ``capacity`` assignments per source rank (the rest are dropped) -- so
dispatch and combine issue no host sync and have static shapes (CUDA-graph capturable); padded
rows reach the experts as zero rows and their outputs are discarded.

Assignments with id -1 ("not routed here") are dropped, as in ``sort_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as fcol

from . import ops

__all__ = ["DispatchHandle", "combine", "dispatch", "expert_range"]


def _all_to_all(x: torch.Tensor, out_splits, in_splits, group) -> torch.Tensor:
    """Differentiable all-to-all (the backward is the reverse exchange), as a functional
    collective: traceable by torch.compile, waited for before use."""
    out = fcol.all_to_all_single_autograd(
        x.contiguous(), out_splits, in_splits, group if group is not None else dist.group.WORLD
    )
    return fcol.wait_tensor(out) if isinstance(out, fcol.AsyncCollectiveTensor) else out


def expert_range(num_experts: int, group=None) -> tuple[int, int]:
    """[first, last) global expert ids owned by this rank of `group`."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if num_experts % world:
        raise ValueError(
            f"moe_ext.distributed: num_experts={num_experts} must be divisible by the group's "
            f"world size {world}"
        )
    per = num_experts // world
    return rank * per, (rank + 1) * per


@dataclass
class DispatchHandle:
    """What combine needs to undo a dispatch."""

    order: torch.Tensor  # this rank's assignments sorted by global expert
    slot: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor  # [T, k] routing weights
    recv_order: torch.Tensor  # received rows sorted by local expert
    recv_slot: torch.Tensor
    send_splits: list[int] | None  # rows sent to each rank (None: capacity-padded exchange)
    recv_splits: list[int] | None
    num_sent: int | None  # kept assignments sent (variable-size exchange)
    capacity: int | None
    group: object
    num_experts: int


def _local_counts_and_ids(counts_from_src: torch.Tensor, total_rows: int) -> torch.Tensor:
    """Local expert id of every received row, rows ordered (source rank, local expert)."""
    per_src_expert = counts_from_src.reshape(-1)  # [W * E_local], row-major (src, expert)
    E_local = counts_from_src.shape[1]
    expert_of_block = torch.arange(E_local, device=counts_from_src.device).repeat(
        counts_from_src.shape[0]
    )
    return torch.repeat_interleave(expert_of_block, per_src_expert.long(), output_size=total_rows)


def dispatch(
    x: torch.Tensor,
    ids: torch.Tensor,
    weights: torch.Tensor,
    num_experts: int,
    group=None,
    capacity: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, DispatchHandle]:
    """Sends each token row to the ranks owning its experts.

    Returns ``(x_local, local_offsets, handle)``: ``x_local[R, H]`` the rows this rank's experts
    must process, grouped by local expert, ``local_offsets[E_local]`` int32 cumulative ends (the
    ``offs`` of ``grouped_mm``/``moe_mlp``), and the handle for :func:`combine`.
    """
    world = dist.get_world_size(group)
    first, last = expert_range(num_experts, group)
    E_local = last - first
    T, k = ids.shape
    H = x.shape[1]
    order, slot, offsets = ops.sort_tokens(ids, num_experts, capacity)
    xp = ops.permute(x, order, slot, k)  # [T*k, H], by global expert, dropped rows last
    counts = torch.diff(offsets, prepend=offsets.new_zeros(1))  # [E] per global expert
    counts_by_rank = counts.view(world, E_local)
    # per-(destination rank, local expert) counts -> per-(source rank, local expert) counts
    recv_counts = torch.empty_like(counts_by_rank)
    dist.all_to_all_single(recv_counts, counts_by_rank, group=group)

    if capacity is None:
        send = counts_by_rank.sum(1)
        recv = recv_counts.sum(1)
        # the one host sync: all_to_all_single takes its split sizes as Python ints
        splits = torch.stack([send, recv]).cpu()
        send_splits, recv_splits = splits[0].tolist(), splits[1].tolist()
        num_sent, total_recv = sum(send_splits), sum(recv_splits)
        x_recv = _all_to_all(xp[:num_sent], recv_splits, send_splits, group)
        local_ids = _local_counts_and_ids(recv_counts, total_recv)
    else:
        # fixed-size exchange: expert e's kept rows go to slots [e*C, e*C + count[e])
        C = capacity
        dest, _ = _capacity_slots(offsets, xp.shape[0], num_experts, C)
        # dropped rows land in one spill row past the end (unique slots: a deterministic copy)
        spill = torch.arange(xp.shape[0], device=x.device) + num_experts * C
        dest = torch.where(dest == num_experts * C, spill, dest)
        padded = xp.new_zeros((num_experts * C + xp.shape[0], H)).index_copy(0, dest, xp)
        padded = padded[: num_experts * C]
        x_recv = _all_to_all(padded, None, None, group)
        # received [src][local expert][C] -> local ids; rows past a block's count are padding
        local_ids = torch.arange(E_local, device=x.device).repeat_interleave(C).repeat(world)
        send_splits = recv_splits = None
        num_sent = None
    recv_order, recv_slot, local_offsets = ops.sort_tokens(
        local_ids.to(torch.int32).unsqueeze(1), E_local
    )
    x_local = ops.permute(x_recv, recv_order, recv_slot, 1)
    handle = DispatchHandle(
        order,
        slot,
        offsets,
        weights,
        recv_order,
        recv_slot,
        send_splits,
        recv_splits,
        num_sent,
        capacity,
        group,
        num_experts,
    )
    return x_local, local_offsets, handle


def combine(y_local: torch.Tensor, handle: DispatchHandle) -> torch.Tensor:
    """Returns each rank's tokens' outputs: y[t] = sum_j weights[t, j] * y_local[row of (t, j)],
    over the kept assignments (dropped ones contribute 0), in j order."""
    h = handle
    H = y_local.shape[1]
    ones = y_local.new_ones((y_local.shape[0], 1), dtype=torch.float32)
    y_recv = ops.unpermute(y_local, h.recv_order, h.recv_slot, ones)  # back to arrival order
    N = h.order.shape[0]
    if h.capacity is None:
        y_sent = _all_to_all(y_recv, h.send_splits, h.recv_splits, h.group)
        yp = torch.cat([y_sent, y_sent.new_zeros((N - h.num_sent, H))])
    else:
        y_back = _all_to_all(y_recv, None, None, h.group)  # [E*C, H]: expert e's i-th row at e*C+i
        dest, valid = _capacity_slots(h.offsets, N, h.num_experts, h.capacity)
        yp = y_back.index_select(0, dest.clamp_max(y_back.shape[0] - 1))
        yp = yp * valid.unsqueeze(1).to(yp.dtype)
    return ops.unpermute(yp, h.order, h.slot, h.weights)


def _capacity_slots(offsets: torch.Tensor, N: int, num_experts: int, C: int):
    """Sorted row i (expert e, i-th of it) <-> padded slot e*C + (i - start[e]); rows past
    offsets[-1] (dropped) get slot E*C and valid False. Device-side, no sync."""
    rows = torch.arange(N, device=offsets.device)
    expert = torch.searchsorted(offsets, rows.to(offsets.dtype), right=True).long()
    e = expert.clamp_max(num_experts - 1)
    start = torch.cat([offsets.new_zeros(1), offsets[:-1]]).long()
    valid = rows < offsets[-1].long()
    dest = torch.where(valid, e * C + (rows - start[e]), torch.full_like(rows, num_experts * C))
    return dest, valid
