"""Every device kernel instantiation once, at a small shape, against the torch reference -- each
case under its own time limit, so a hang or a trap costs one case, not the GPU lease.

    python benchmarks/gpu_smoke.py                      # CUDA (the first step of a GPU session)
    python benchmarks/gpu_smoke.py --backend emu        # the same cases on the SIMT emulator
    python benchmarks/gpu_smoke.py --list               # the case names

A supervisor process runs the cases in a worker process and reads its progress line by line. A
case that exceeds ``--case-timeout`` is killed with its worker (reported as TIMEOUT); a failing
case ends its worker too (on CUDA an error poisons the context); either way a fresh worker goes
on with the next case. The summary is one JSON line per case in ``--json`` (written as each case
finishes) and a table at the end; the exit status is 1 when any case did not pass.

What a case covers (the kernel families and their template instantiations, see
``csrc/cuda/*.cu``): route (softmax / sigmoid + group-limited, fp32 / bf16 logits, backward,
stats), sort_tokens (plain, capacity), permute / unpermute / unpermute_backward (16-byte and
narrow rows), grouped_mm on the Ampere kernel (bf16 / fp16 x large / small_m / swap_ab tile x the four
forms and both operand majors; fp32 on the FFMA kernel) and on the Hopper kernel (its three
operand-major combinations: fwd, dA, dB), moe_mlp (gated and ungated, both families), and the
block-FP8 grouped GEMM (both MMA paths, both forms) and moe_mlp_fp8.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _ops(backend: str):
    import moe_ext  # noqa: F401  (registers the ops)

    return torch.ops.moe_ext_emu if backend == "emu" else torch.ops.moe_ext


def _dev(backend: str) -> str:
    return "cuda" if backend == "cuda" else "cpu"


def _close(name: str, out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    out, ref = out.double().cpu(), ref.double().cpu()
    if out.shape != ref.shape:
        raise AssertionError(f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(out).all():
        raise AssertionError(f"{name}: non-finite values")
    err = (out - ref).norm() / ref.norm().clamp_min(1e-30)
    if err > tol:
        raise AssertionError(f"{name}: relative error {err:.2e} > {tol:.0e}")


def _equal(name: str, out: torch.Tensor, ref: torch.Tensor) -> None:
    if not torch.equal(out.cpu(), ref.cpu()):
        bad = (out.cpu() != ref.cpu()).nonzero()[:4].tolist()
        raise AssertionError(f"{name}: differs from the reference at {bad}")


TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def _routing(T, E, k, dev, gen):
    ids = torch.stack([torch.randperm(E, generator=gen)[:k] for _ in range(T)]).int().to(dev)
    w = torch.rand(T, k, generator=gen).to(dev)
    return ids, w


# ---------------------------------------------------------------------------------- the cases
def case_route(score, grouped, dtype):
    def run(backend, gen):
        from moe_ext import reference

        ops, dev = _ops(backend), _dev(backend)
        T, E, k = 37, 64, 6
        kw = dict(
            score_func=score,
            renormalize=True,
            num_groups=8 if grouped else 1,
            topk_groups=3 if grouped else 1,
            scaling_factor=2.5 if grouped else 1.0,
        )
        logits = torch.randn(T, E, generator=gen).to(dtype)
        bias = torch.randn(E, generator=gen) * 0.1 if grouped else None
        w, ids = ops.route(
            logits.to(dev), k, correction_bias=None if bias is None else bias.to(dev), **kw
        )
        rw, rids = reference.route(logits, k, correction_bias=bias, **kw)
        _equal("ids", ids, rids)
        _close("weights", w, rw, 1e-5)
        gw = torch.randn(T, k, generator=gen)
        dx = ops.route_backward(gw.to(dev), logits.to(dev), ids, score, True, kw["scaling_factor"])
        lg = logits.float().requires_grad_()
        reference.route(lg, k, correction_bias=bias, **kw)[0].backward(gw)
        _close("route_backward", dx, lg.grad, max(1e-4, TOL[dtype]))
        _, _, counts, mean_prob = ops.route_with_stats(
            logits.to(dev), k, correction_bias=None if bias is None else bias.to(dev), **kw
        )
        _equal("counts", counts, torch.bincount(rids.flatten().long(), minlength=E).int())

    return run


def case_sort(capacity):
    def run(backend, gen):
        from moe_ext import reference

        ops, dev = _ops(backend), _dev(backend)
        T, E, k = 301, 40, 4
        ids, _ = _routing(T, E, k, "cpu", gen)
        ids[::7, 0] = -1  # not routed here
        got = ops.sort_tokens(ids.to(dev), E, capacity)
        for n, g, r in zip(
            ("order", "slot", "offsets"), got, reference.sort_tokens(ids, E, capacity)
        ):
            _equal(n, g, r)

    return run


def case_permute(dtype, H):
    def run(backend, gen):
        from moe_ext import reference

        ops, dev = _ops(backend), _dev(backend)
        T, E, k = 53, 8, 2
        ids, w = _routing(T, E, k, "cpu", gen)
        order, slot, offsets = reference.sort_tokens(ids, E)
        x = torch.randn(T, H, generator=gen).to(dtype)
        xp = ops.permute(x.to(dev), order.to(dev), slot.to(dev), k)
        _equal("permute", xp, reference.permute(x, order, slot, k))
        yp = torch.randn(T * k, H, generator=gen).to(dtype)
        y = ops.unpermute(yp.to(dev), order.to(dev), slot.to(dev), w.to(dev))
        _close(
            "unpermute", y, reference.unpermute(yp.double(), order, slot, w.double()), TOL[dtype]
        )
        gy = torch.randn(T, H, generator=gen).to(dtype)
        gyp, gw = ops.unpermute_backward(
            gy.to(dev), yp.to(dev), order.to(dev), slot.to(dev), w.to(dev)
        )
        ypl, wl = yp.double().requires_grad_(), w.double().requires_grad_()
        reference.unpermute(ypl, order, slot, wl).backward(gy.double())
        _close("grad_yp", gyp, ypl.grad, TOL[dtype])
        _close("grad_weights", gw, wl.grad, TOL[dtype])

    return run


def _gmm_inputs(form, dtype, gen, a_t=False, b_t=False):
    """Small problems with uneven and empty groups; a_t / b_t: operands with the M/N (not K)
    dim contiguous (transposed views, read in place)."""
    G, M, K, N = 3, 160, 96, 136  # 16-byte pitches whichever dim is contiguous (TMA)
    sizes = {"2x3": [70, 0, 66], "3x2": [40, 0, 88], "2x2": [33, 0, 50], "3x3": None}[form]
    offs = None if sizes is None else torch.tensor(sizes).cumsum(0).int()

    def mat(*shape, t=False):
        m = torch.randn(*shape, generator=gen).to(dtype)
        return m.transpose(-2, -1).contiguous().transpose(-2, -1) if t else m

    if form == "2x3":
        return mat(M, K, t=a_t), mat(G, K, N, t=b_t), offs
    if form == "3x2":
        return mat(G, M, K, t=a_t), mat(K, int(offs[-1]) + 8, t=b_t), offs
    if form == "2x2":
        return mat(M, int(offs[-1]) + 5, t=a_t), mat(int(offs[-1]) + 5, N, t=b_t), offs
    return mat(G, M, K, t=a_t), mat(G, K, N, t=b_t), None


def case_gmm(path, config, dtype, form, a_t=False, b_t=False):
    def run(backend, gen):
        from moe_ext import reference

        ops, dev = _ops(backend), _dev(backend)
        a, b, offs = _gmm_inputs(form, dtype, gen, a_t, b_t)
        os.environ["MOE_EXT_GEMM_PATH"] = path
        os.environ["MOE_EXT_GEMM_CONFIG"] = config
        try:
            out = ops.grouped_mm(a.to(dev), b.to(dev), None if offs is None else offs.to(dev))
        finally:
            os.environ.pop("MOE_EXT_GEMM_PATH")
            os.environ.pop("MOE_EXT_GEMM_CONFIG")
        _close("grouped_mm", out, reference.grouped_mm(a.double(), b.double(), offs), TOL[dtype])

    return run


def case_moe_mlp(path, dtype, activation):
    def run(backend, gen):
        from moe_ext import reference

        ops, dev = _ops(backend), _dev(backend)
        T, H, I, E, k = 45, 128, 64, 4, 2
        ids, w = _routing(T, E, k, "cpu", gen)
        order, slot, offsets = reference.sort_tokens(ids, E)
        gated = activation in ("swiglu", "geglu", "geglu_tanh")
        x = torch.randn(T, H, generator=gen).to(dtype)
        w1 = (torch.randn(E, (2 if gated else 1) * I, H, generator=gen) * H**-0.5).to(dtype)
        w2 = (torch.randn(E, H, I, generator=gen) * I**-0.5).to(dtype)
        # sm90_cluster: the Hopper kernels in 2x2 clusters
        os.environ["MOE_EXT_GEMM_PATH"] = "sm90" if path.startswith("sm90") else path
        os.environ["MOE_EXT_GEMM_CONFIG"] = "sm90_cluster" if path == "sm90_cluster" else "auto"
        try:
            y = ops.moe_mlp(*(t.to(dev) for t in (x, w1, w2, w, order, slot, offsets)), activation)
        finally:
            os.environ.pop("MOE_EXT_GEMM_PATH")
            os.environ.pop("MOE_EXT_GEMM_CONFIG")
        ref = reference.moe_mlp(
            x.double(), w1.double(), w2.double(), w.double(), order, slot, offsets, activation
        )
        _close("moe_mlp", y, ref, 3 * TOL[dtype])

    return run


def case_fp8(mma, form):
    """grouped_mm_fp8 (MOE_EXT_FP8_MMA=f16|e4m3, ragged-M or batched) and moe_mlp_fp8 (form
    "mlp") against the contract's formula in fp64 (reference.py)."""

    def run(backend, gen):
        import moe_ext
        from moe_ext import reference

        ops, dev = _ops(backend), _dev(backend)
        os.environ["MOE_EXT_FP8_MMA"] = mma
        try:
            if form == "mlp":
                T, H, I, E, k = 45, 256, 192, 4, 2
                ids, w = _routing(T, E, k, "cpu", gen)
                order, slot, offsets = reference.sort_tokens(ids, E)
                x = torch.randn(T, H, generator=gen).bfloat16()
                w1, s1 = moe_ext.ops.quantize_weight_fp8(torch.randn(E, 2 * I, H, generator=gen))
                w2, s2 = moe_ext.ops.quantize_weight_fp8(torch.randn(E, H, I, generator=gen))
                args = (x, w1, s1, w2, s2, w, order, slot, offsets)
                y = ops.moe_mlp_fp8(*(t.to(dev) for t in args), "swiglu")
                _close("moe_mlp_fp8", y, reference.moe_mlp_fp8(*args), 2e-2)
                return
            G, M, N, K = 3, 200, 192, 300
            batched = form == "batched"
            x = torch.randn(*((G, M, K) if batched else (M, K)), generator=gen)
            a, a_s = moe_ext.quantize_fp8(x.reshape(-1, K))
            a, a_s = a.view(*x.shape), a_s.view(*x.shape[:-1], -1)
            b, b_s = moe_ext.ops.quantize_weight_fp8(torch.randn(G, N, K, generator=gen))
            offs = None if batched else torch.tensor([50, 50, 170], dtype=torch.int32)
            args = [t.to(dev) if t is not None else None for t in (a, a_s, b, b_s, offs)]
            out = ops.grouped_mm_fp8(*args, torch.float32)
            ref = reference.grouped_mm_fp8(a, a_s, b, b_s, offs, torch.float64)
            _close(f"grouped_mm_fp8/{mma}", out, ref, 1e-5 if mma == "f16" else 1e-3)
        finally:
            os.environ.pop("MOE_EXT_FP8_MMA", None)

    return run


def _planted(kind):
    """Self-test of the supervisor (--plant): a case that never returns, or that kills its
    worker the way a device trap does."""

    def run(backend, gen):
        if kind == "hang":
            time.sleep(10**6)
        os._exit(134)

    return run


PLANT: list[str] = []  # --plant hang|crash: planted cases first


def cases(backend: str) -> list[tuple[str, object]]:
    out = [(f"planted/{kind}", _planted(kind)) for kind in PLANT]
    for score, grouped in (("softmax", False), ("sigmoid", True)):
        for dt in (torch.float32, torch.bfloat16):
            out.append(
                (
                    f"route/{score}{'+groups' if grouped else ''}/{str(dt)[6:]}",
                    case_route(score, grouped, dt),
                )
            )
    out += [("sort_tokens", case_sort(None)), ("sort_tokens/capacity", case_sort(37))]
    for dt, H in ((torch.bfloat16, 256), (torch.float32, 96), (torch.bfloat16, 7)):
        out.append((f"permute+unpermute/{str(dt)[6:]}/H{H}", case_permute(dt, H)))
    if backend == "cpu":  # one native CPU implementation per op: no kernel families
        out.append(("grouped_mm/2x3/bfloat16", case_gmm("auto", "auto", torch.bfloat16, "2x3")))
        out.append(("moe_mlp/swiglu/bfloat16", case_moe_mlp("auto", torch.bfloat16, "swiglu")))
        return out
    for dt in (torch.bfloat16, torch.float16):
        n = str(dt)[6:]
        for config in ("large", "small_m", "swap_ab"):
            for form in ("2x3", "3x2", "2x2", "3x3"):
                out.append(
                    (f"grouped_mm/sm80/{config}/{form}/{n}", case_gmm("sm80", config, dt, form))
                )
            out.append(
                (
                    f"grouped_mm/sm80/{config}/2x3/a_t+b_t/{n}",
                    case_gmm("sm80", config, dt, "2x3", True, True),
                )
            )
        # the Hopper kernel's operand majors: fwd (K, K), dA (K, MN), dB = ragged K (MN, MN:
        # a = x^T, b = dout, both with M/N contiguous)
        for label, form, a_t, b_t in (
            ("fwd", "2x3", False, False),
            ("dA", "2x3", False, True),
            ("dB", "2x2", True, False),
            ("batched", "3x3", False, False),
        ):
            for config in ("sm90", "sm90_cluster"):  # one CTA per tile / 2x2 clusters
                out.append(
                    (
                        f"grouped_mm/{config}/{label}/{n}",
                        case_gmm("sm90", config, dt, form, a_t, b_t),
                    )
                )
        for path in ("sm80", "sm90", "sm90_cluster"):
            for act in ("swiglu", "gelu"):
                out.append((f"moe_mlp/{path}/{act}/{n}", case_moe_mlp(path, dt, act)))
    out.append(("grouped_mm/fp32/2x3", case_gmm("auto", "auto", torch.float32, "2x3")))
    out.append(("grouped_mm/fp32/2x2", case_gmm("auto", "auto", torch.float32, "2x2")))
    for mma in ("f16", "e4m3"):  # the FP8 kernel's two MMA paths, both forms
        for form in ("2x3", "batched"):
            out.append((f"grouped_mm_fp8/{mma}/{form}", case_fp8(mma, form)))
    out.append(("moe_mlp_fp8/auto", case_fp8("auto", "mlp")))
    return out


# ------------------------------------------------------------------------ worker / supervisor
def worker(backend: str, start: int) -> int:
    table = cases(backend)
    for i in range(start, len(table)):
        name, fn = table[i]
        print(f"START {i} {name}", flush=True)
        t0 = time.perf_counter()
        try:
            fn(backend, torch.Generator().manual_seed(1000 + i))
            if backend == "cuda":
                torch.cuda.synchronize()
        except Exception as e:  # noqa: BLE001  (reported, then a fresh worker goes on)
            msg = f"{type(e).__name__}: {e}".replace("\n", " | ")[:2000]
            import moe_ext

            hang = moe_ext._C.device_wait_timeout_report()  # a bounded wait that trapped
            if hang:
                msg = f"{hang} | {msg}"
            print(f"FAIL {i} {time.perf_counter() - t0:.3f} {msg}", flush=True)
            return 1
        print(f"PASS {i} {time.perf_counter() - t0:.3f}", flush=True)
    return 0


def supervise(backend: str, case_timeout: float, json_path: str | None) -> int:
    table = cases(backend)
    results: list[dict] = []
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text("")
    nxt = 0
    while nxt < len(table):
        planted = [a for k in PLANT for a in ("--plant", k)]
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "--backend",
                backend,
                "--start",
                str(nxt),
                *planted,
            ],
            stdout=subprocess.PIPE,
            text=True,
            stderr=subprocess.STDOUT,
            bufsize=1,
        )
        current, since, log = None, time.monotonic(), []
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                parts = line.rstrip("\n").split(" ", 3)
                if parts[0] == "START":
                    current, since, log = int(parts[1]), time.monotonic(), []
                elif parts[0] in ("PASS", "FAIL") and current is not None:
                    res = dict(
                        case=table[current][0],
                        status=parts[0],
                        seconds=float(parts[2]),
                        detail=(parts[3] if len(parts) > 3 else ""),
                    )
                    if log and parts[0] == "FAIL":
                        res["output"] = "".join(log[-20:])
                    _record(results, res, json_path)
                    current = None
                else:
                    log.append(line)  # device printf (a bounded wait's report), warnings
                    sys.stdout.write(line)
            if current is not None and time.monotonic() - since > case_timeout:
                proc.kill()
                _record(
                    results,
                    dict(
                        case=table[current][0],
                        status="TIMEOUT",
                        seconds=round(time.monotonic() - since, 1),
                        detail=f"over {case_timeout:.0f} s",
                        output="".join(log[-20:]),
                    ),
                    json_path,
                )
                break
            if not ready and proc.poll() is not None:
                break
        proc.wait()
        if current is not None and (not results or results[-1]["case"] != table[current][0]):
            # the worker died mid-case (a trap, a segfault): that case is the culprit
            _record(
                results,
                dict(
                    case=table[current][0],
                    status="CRASH",
                    seconds=0.0,
                    detail=f"worker exit {proc.returncode}",
                    output="".join(log[-20:]),
                ),
                json_path,
            )
        finished = {r["case"] for r in results}
        if table[nxt][0] not in finished:  # the worker never got as far as its first case
            _record(
                results,
                dict(
                    case=table[nxt][0],
                    status="CRASH",
                    seconds=0.0,
                    detail=f"worker exit {proc.returncode} before the case: "
                    + "".join(log[-5:])[-500:],
                ),
                json_path,
            )
        nxt = 1 + max(i for i, (n, _) in enumerate(table) if n in finished | {table[nxt][0]})
    bad = [r for r in results if r["status"] != "PASS"]
    print(f"\n{len(results) - len(bad)}/{len(table)} cases passed on {backend}")
    for r in bad:
        print(f"  {r['status']:8s} {r['case']}: {r['detail']}")
    return 1 if bad or len(results) < len(table) else 0


def _record(results, res, json_path):
    results.append(res)
    mark = {"PASS": "ok"}.get(res["status"], res["status"])
    print(f"{mark:8s} {res['seconds']:7.2f} s  {res['case']}  {res['detail'][:200]}", flush=True)
    if json_path:
        with open(json_path, "a") as f:
            f.write(json.dumps(res) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="cuda", choices=["cuda", "emu", "cpu"])
    ap.add_argument("--case-timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--json", default=None, help="one JSON line per case, written as it finishes")
    ap.add_argument("--list", action="store_true")
    ap.add_argument(
        "--plant",
        action="append",
        default=[],
        choices=["hang", "crash"],
        help="add a planted hanging / crashing case first (tests the supervisor)",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    PLANT.extend(args.plant)
    if args.list:
        print("\n".join(n for n, _ in cases(args.backend)))
        return 0
    if args.worker:
        return worker(args.backend, args.start)
    if args.backend == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_smoke.py: no CUDA device (use --backend emu or cpu)")
    return supervise(args.backend, args.case_timeout, args.json)


if __name__ == "__main__":
    sys.exit(main())
