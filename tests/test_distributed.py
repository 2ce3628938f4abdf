"""Expert parallelism (moe_ext.distributed) with 2 and 4 CPU processes over gloo (loopback).

Every rank routes its own tokens over E experts sharded across the ranks, dispatches, runs a
SwiGLU expert MLP on its local experts with grouped_mm, and combines. Oracle: the single-process
moe_mlp over all experts on the same tokens (same sort, same capacity rule per source rank).
Outputs, d x, d weights, and the local experts' weight gradients (from every rank's tokens)
must match; uniform and skewed routing, an empty rank, capacity dropping, -1 sentinels.
"""

from __future__ import annotations

import os
import tempfile
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

E, H, I, K = 8, 16, 12, 2


def tokens_of(rank: int, world: int, case: str) -> int:
    if case == "empty_rank" and rank == world - 1:
        return 0
    return 5 + 3 * rank


def make_global(world: int, case: str, seed: int = 0):
    """Inputs of every rank (identical on all ranks: same seed)."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(E, 2 * I, H, generator=g) / H**0.5
    w2 = torch.randn(E, H, I, generator=g) / I**0.5
    per_rank = []
    for r in range(world):
        T = tokens_of(r, world, case)
        x = torch.randn(T, H, generator=g)
        logits = torch.randn(T, E, generator=g)
        if case == "skewed":
            logits[:, 0] += 4.0  # expert 0 (rank 0) gets almost every token
        per_rank.append((x, logits))
    return w1, w2, per_rank


def expert_mlp(x_local, offs, w1_local, w2_local):
    import moe_ext

    h = moe_ext.grouped_mm(x_local, w1_local.transpose(-2, -1), offs)
    a = torch.nn.functional.silu(h[:, :I]) * h[:, I:]
    return moe_ext.grouped_mm(a, w2_local.transpose(-2, -1), offs)


def run_rank(rank, world, init_file, case, capacity, result_dir):
    try:
        import moe_ext
        from moe_ext import distributed as ep

        dist.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
        )
        w1, w2, per_rank = make_global(world, case)
        x, logits = per_rank[rank]
        weights, ids = moe_ext.route(logits, K)
        if case == "sentinels" and ids.shape[0]:
            ids[::2, 1] = -1
        first, last = ep.expert_range(E, None)
        x = x.clone().requires_grad_(True)
        weights = weights.clone().requires_grad_(True)
        w1_local = w1[first:last].clone().requires_grad_(True)
        w2_local = w2[first:last].clone().requires_grad_(True)
        x_local, offs, handle = ep.dispatch(x, ids, weights, E, capacity=capacity)
        y = ep.combine(expert_mlp(x_local, offs, w1_local, w2_local), handle)
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(100 + rank))
        (y * gy).sum().backward()

        # oracle: every rank's tokens through the full experts in one process
        w1f = w1.clone().requires_grad_(True)
        w2f = w2.clone().requires_grad_(True)
        outs = []
        for r in range(world):
            xr, lr = per_rank[r]
            wr, ir = moe_ext.route(lr, K)
            if case == "sentinels" and ir.shape[0]:
                ir[::2, 1] = -1
            xr = xr.clone().requires_grad_(True)
            wr = wr.clone().requires_grad_(True)
            order, slot, offsets = moe_ext.sort_tokens(ir, E, capacity)
            yr = moe_ext.moe_mlp(xr, w1f, w2f, wr, order, slot, offsets, "swiglu")
            gr = torch.randn(yr.shape, generator=torch.Generator().manual_seed(100 + r))
            (yr * gr).sum().backward()
            outs.append((yr.detach(), xr.grad, wr.grad))
        y_ref, gx_ref, gw_ref = outs[rank]
        torch.save(
            dict(
                y=y.detach(),
                y_ref=y_ref,
                gx=x.grad,
                gx_ref=gx_ref,
                gw=weights.grad,
                gw_ref=gw_ref,
                gw1=w1_local.grad,
                gw1_ref=w1f.grad[first:last],
                gw2=w2_local.grad,
                gw2_ref=w2f.grad[first:last],
            ),
            os.path.join(result_dir, f"rank{rank}.pt"),
        )
        dist.destroy_process_group()
    except Exception:  # surfaced by the parent
        with open(os.path.join(result_dir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise


@pytest.mark.parametrize(
    "world,case,capacity",
    [
        (2, "uniform", None),
        (2, "skewed", None),
        (4, "uniform", None),
        (4, "empty_rank", None),
        (2, "sentinels", None),
        (2, "uniform", 3),
        (4, "skewed", 2),
    ],
    ids=[
        "w2-uniform",
        "w2-skewed",
        "w4-uniform",
        "w4-empty-rank",
        "w2-sentinels",
        "w2-capacity3",
        "w4-skewed-capacity2",
    ],
)
@pytest.mark.slow
def test_matches_single_process(world, case, capacity):
    with tempfile.TemporaryDirectory() as d:
        init_file = os.path.join(d, "init")
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=run_rank, args=(r, world, init_file, case, capacity, d))
            for r in range(world)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        for p in procs:
            if p.is_alive():
                p.kill()
        errors = [open(os.path.join(d, f)).read() for f in os.listdir(d) if f.endswith(".err")]
        assert not errors, errors[0]
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        for r in range(world):
            res = torch.load(os.path.join(d, f"rank{r}.pt"))
            for name in ("y", "gx", "gw", "gw1", "gw2"):
                torch.testing.assert_close(
                    res[name],
                    res[name + "_ref"],
                    rtol=1e-5,
                    atol=1e-5,
                    msg=lambda m: f"rank {r} {name}: {m}",
                )


def run_layer_rank(rank, world, init_file, result_dir):
    """moe_ext.MoE(expert_parallel_group=...) vs the single-process layer with the same weights:
    outputs, d x and the local experts' weight gradients (from every rank's tokens)."""
    try:
        import moe_ext

        dist.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
        )
        torch.manual_seed(0)
        full = moe_ext.MoE(H, I, E, K, shared_ffn_size=8)
        layer = moe_ext.MoE(H, I, E, K, shared_ffn_size=8, expert_parallel_group=dist.group.WORLD)
        first, last = layer.local_experts
        with torch.no_grad():
            layer.router.weight.copy_(full.router.weight)
            layer.gate_up_proj.copy_(full.gate_up_proj[first:last])
            layer.down_proj.copy_(full.down_proj[first:last])
            layer.shared_expert.load_state_dict(full.shared_expert.state_dict())
        xs = [
            torch.randn(4 + r, H, generator=torch.Generator().manual_seed(10 + r))
            for r in range(world)
        ]
        x = xs[rank].clone().requires_grad_(True)
        y = layer(x)
        y.square().sum().backward()
        refs = []
        for r in range(world):
            xr = xs[r].clone().requires_grad_(True)
            yr = full(xr)
            yr.square().sum().backward()
            refs.append((yr.detach(), xr.grad))
        torch.save(
            dict(
                y=y.detach(),
                y_ref=refs[rank][0],
                gx=x.grad,
                gx_ref=refs[rank][1],
                gw1=layer.gate_up_proj.grad,
                gw1_ref=full.gate_up_proj.grad[first:last],
            ),
            os.path.join(result_dir, f"rank{rank}.pt"),
        )
        dist.destroy_process_group()
    except Exception:
        with open(os.path.join(result_dir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise


def test_layer_expert_parallel_matches_single_process():
    world = 2
    with tempfile.TemporaryDirectory() as d:
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=run_layer_rank, args=(r, world, os.path.join(d, "init"), d))
            for r in range(world)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        errors = [open(os.path.join(d, f)).read() for f in os.listdir(d) if f.endswith(".err")]
        assert not errors, errors[0]
        for r in range(world):
            res = torch.load(os.path.join(d, f"rank{r}.pt"))
            for name in ("y", "gx", "gw1"):
                torch.testing.assert_close(res[name], res[name + "_ref"], rtol=1e-5, atol=1e-5)
