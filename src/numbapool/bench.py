"""``numbapool bench``: numbapool against PyTorch CPU and the memory roofline, in one run.

For each case (pooler, shape, options, layout) it times the forward pass (and, with
``--backward``, ``pool_grad`` against PyTorch autograd's backward), and reports the speed-up
over PyTorch and the share of the memory roofline: the time to read the input and write the
output once at the read+write bandwidth of a parallel copy, measured again beside each case
(on a shared machine it drifts within minutes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numba
import numpy as np

from .api import get, pool, pool_grad, poolers

__all__ = ["CASES", "Case", "Target", "run", "time_cases", "main", "CopyBandwidth",
           "best_time", "summarise", "PAIRS", "PAIR_SHAPE", "time_pairs", "pair_shapes"]


@dataclass(frozen=True)
class Case:
    name: str
    pooler: str
    shape: tuple[int, ...]
    options: dict = field(default_factory=dict)


CASES = [
    Case("resnet_stem", "max", (32, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1)),
    Case("vgg", "max", (32, 128, 56, 56), dict(kernel_size=2)),
    Case("global_avg", "global_avg", (64, 2048, 7, 7)),
    Case("volume_3d", "max", (4, 64, 16, 56, 56), dict(kernel_size=2)),
    Case("signal_1d", "avg", (32, 128, 4096), dict(kernel_size=3, stride=2, padding=1)),
    Case("large_image", "avg", (1, 16, 3000, 2000), dict(kernel_size=2)),
    Case("small", "max", (1, 64, 56, 56), dict(kernel_size=3, stride=2, padding=1)),
]


def best_time(fn: Callable[[], object], repeat: int = 7, min_time: float = 0.2,
              sync: Callable[[], object] = lambda: None) -> float:
    """Best wall time of ``fn`` over ``repeat`` rounds, each long enough to time.
    ``sync`` waits for asynchronous work (a GPU) before a clock is read."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - t0
    number = max(1, int(min_time / max(once, 1e-6) / repeat))
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


@numba.njit(parallel=True, cache=True, nogil=True)
def _parallel_copy(src, dst):
    for i in numba.prange(src.shape[0]):
        dst[i] = src[i]


class CopyBandwidth:
    """Read+write bandwidth in bytes/s of a parallel float32 copy of ``nbytes`` (the
    roofline's slope), measured each time it is called: on a shared machine it drifts
    within minutes, so the bench measures it beside every case."""

    def __init__(self, nbytes: int = 512 * 2**20) -> None:
        self.nbytes = nbytes
        self._src = np.ones(nbytes // 4, dtype=np.float32)
        self._dst = np.empty_like(self._src)

    def __call__(self) -> float:
        t = best_time(lambda: _parallel_copy(self._src, self._dst), repeat=5)
        return 2 * self.nbytes / t


def _torch_forward(torch, case: Case, layout: str, device: str = "cpu"):
    """PyTorch's input and pooling function for ``case`` (a max pool's takes ``indices``)."""
    import torch.nn.functional as F  # noqa: N812

    rank = len(case.shape) - 2
    x = torch.rand(case.shape, device=device)
    if layout == "channels_last" and rank in (2, 3):
        x = x.contiguous(memory_format=torch.channels_last if rank == 2
                         else torch.channels_last_3d)
    o = case.options
    k, s, p = o.get("kernel_size"), o.get("stride"), o.get("padding", 0)
    if case.pooler == "max":
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[rank]
        return x, lambda t, indices=False: fn(t, k, s, p, return_indices=indices)
    if case.pooler == "avg":
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[rank]
        return x, lambda t: fn(t, k, s, p)
    if case.pooler == "global_avg":
        fn = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[rank]
        return x, lambda t: fn(t, 1)
    return None, None


@dataclass(frozen=True)
class Target:
    """Where the bench runs: how arrays get there, how to wait for the work, and the peer's
    device."""

    place: Callable[[np.ndarray], object] = lambda a: a
    sync: Callable[[], object] = lambda: None
    torch_device: str = "cpu"


def run(cases=CASES, layouts=("channels_first", "channels_last"), backward: bool = False,
        threads: int = 2, repeat: int = 7, out=print, recompute: bool = False) -> list[dict]:
    """Time every case on the CPU with ``threads`` threads (both libraries; restored after);
    print a table through ``out``; return the rows."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        import torch

        torch_before = torch.get_num_threads()
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    try:
        bw = CopyBandwidth()
        out(f"threads: {threads}; parallel-copy read+write bandwidth {bw() / 1e9:.1f} GB/s, "
            "measured again beside each case")
        rows = time_cases(cases, layouts, backward, repeat, out, bw, torch, Target(),
                          recompute=recompute)
        summarise(rows, out)
    finally:
        numba.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(torch_before)
    return rows


def backward_call(name: str, x, gy, opts: dict, recompute: bool = False) -> Callable:
    """``pool_grad`` as a training step calls it: for a pooler with indices, given those of
    its forward pass (as PyTorch's autograd backward uses the indices its forward saved);
    ``recompute``: without them (the forward is recomputed inside)."""
    if not recompute and "indices" in get(name).capabilities:
        _, idx = pool(name, x, return_indices=True, **opts)
        return partial(pool_grad, name, x, gy, indices=idx, **opts)
    return partial(pool_grad, name, x, gy, **opts)


def time_cases(cases, layouts, backward: bool, repeat: int, out,
               bw: float | Callable[[], float], torch, target: Target, digits: int = 2,
               recompute: bool = False) -> list[dict]:
    """The table's rows: numbapool and the PyTorch peer (``torch`` None: none) on every
    case, timed with ``target.sync`` before each clock reading.  Selections' backward passes
    are given the forward's indices unless ``recompute``.  ``bw``: the roofline's
    bandwidth, or a function measuring it, called beside each case."""
    head = (f"{'case':<13}{'pooler':<11}{'layout':<15}{'pass':<9}{'numbapool':>11}"
            f"{'torch':>11}{'speed-up':>10}{'roofline':>10}")
    out(head)
    out("-" * len(head))
    rows = []
    rng = np.random.default_rng(0)
    timer = partial(best_time, repeat=repeat, sync=target.sync)
    for case in cases:
        x_cf = rng.random(case.shape, dtype=np.float32)
        for layout in layouts:
            host = x_cf if layout == "channels_first" else np.ascontiguousarray(
                np.moveaxis(x_cf, 1, -1))
            x = target.place(host)
            opts = dict(case.options, layout=layout)
            y = pool(case.pooler, x, **opts)
            nx, ny = host.nbytes, math.prod(y.shape) * host.itemsize
            passes = [("forward", partial(pool, case.pooler, x, **opts), nx + ny)]
            with_idx = backward and "indices" in get(case.pooler).capabilities
            if with_idx:  # a training step's forward: the indices for the backward pass too
                passes.append(("fwd+idx", partial(pool, case.pooler, x, return_indices=True,
                                                  **opts), nx + 3 * ny))
            if backward:
                gy = target.place(np.ones(y.shape, np.float32))
                passes.append(("backward", backward_call(case.pooler, x, gy, opts, recompute),
                               2 * nx + ny))
            tx, tfn = (None, None) if torch is None else _torch_forward(
                torch, case, layout, target.torch_device)
            here = bw() if callable(bw) else bw
            for label, fn, nbytes in passes:
                ours = timer(fn)
                theirs = math.nan
                if tfn is not None:
                    if label == "forward":
                        theirs = timer(partial(tfn, tx))
                    elif label == "fwd+idx":
                        theirs = timer(partial(tfn, tx, indices=True))
                    else:
                        tx.requires_grad_(True)
                        ty = tfn(tx)
                        tgy = torch.ones_like(ty)
                        theirs = timer(partial(torch.autograd.grad, ty, tx, tgy,
                                               retain_graph=True))
                        tx.requires_grad_(False)
                roof = nbytes / here
                rows.append(dict(case=case.name, pooler=case.pooler, layout=layout,
                                 pass_=label, ours=ours, torch=theirs, speedup=theirs / ours,
                                 roofline=roof / ours, bandwidth=here))
                out(f"{case.name:<13}{case.pooler:<11}{layout:<15}{label:<9}"
                    f"{ours * 1e3:>9.{digits}f}ms{theirs * 1e3:>9.{digits}f}ms"
                    f"{theirs / ours:>9.2f}x{roof / ours:>9.0%}")
    return rows


def summarise(rows: list[dict], out=print, peer: str = "torch") -> None:
    """Geometric-mean speed-ups, slowest case, median roofline share."""
    for label in ("forward", "fwd+idx", "backward"):
        sel = [r for r in rows if r["pass_"] == label and np.isfinite(r["speedup"])]
        if sel:
            gm = math.exp(sum(math.log(r["speedup"]) for r in sel) / len(sel))
            worst = min(sel, key=lambda r: r["speedup"])
            out(f"{label}: geometric-mean speed-up over {peer} {gm:.2f}x; slowest "
                f"{worst['case']}/{worst['layout']} {worst['speedup']:.2f}x")
    big = [r for r in rows if r["pass_"] == "forward" and r["case"] != "small"]
    if big:
        out(f"forward: median share of the memory roofline (all but 'small') "
            f"{float(np.median([r['roofline'] for r in big])):.0%}")
        bws = [r["bandwidth"] for r in big if "bandwidth" in r]
        if bws:
            out(f"(copy bandwidth beside the cases: {min(bws) / 1e9:.1f} to "
                f"{max(bws) / 1e9:.1f} GB/s)")


PAIRS = [("gem", "avg"), ("fractional_max", "max")]
"""Plugin poolers and the built-in each is compared with (the issue's target: within 1.5x)."""
PAIR_SHAPE = (8, 64, 56, 56)
"""The shape of the asv per-pooler benchmarks."""


def _pair_options(name: str, rank: int = 2) -> dict:
    """The first geometry example of the pooler's window rule at ``rank`` spatial axes (2-D:
    what the asv per-pooler benchmarks use), with a seed if it draws random numbers."""
    from .testing import examples

    opts = dict(examples(name, rank)[0])
    if not get(name).deterministic:
        opts["seed"] = 0
    return opts


def _same_output_options(plugin: str, builtin: str, builtin_out: tuple[int, ...],
                         plugin_out: tuple[int, ...], rank: int = 2) -> list[tuple[str, dict]]:
    """Further geometries for ``plugin`` when its example writes another output size than
    ``builtin``'s and its window rule takes ``output_size`` (fractional pooling): the
    built-in's output size (``same out``), and that with the built-in's kernel size too
    where the rule takes one and the sizes differ (``same out+k``)."""
    rule = get(plugin).window.options
    if builtin_out == plugin_out or "output_size" not in rule:
        return []
    opts = {k: v for k, v in _pair_options(plugin, rank).items()
            if k not in ("output_size", "output_ratio")}
    rows = [("same out", dict(opts, output_size=builtin_out))]
    kernel = _pair_options(builtin, rank).get("kernel_size")
    if "kernel_size" in rule and kernel is not None and kernel != rule["kernel_size"] \
            and kernel != opts.get("kernel_size"):
        rows.append(("same out+k", dict(opts, output_size=builtin_out, kernel_size=kernel)))
    return rows


def time_pairs(pairs=PAIRS, layouts=("channels_first", "channels_last"),
               shape: tuple[int, ...] = PAIR_SHAPE, rounds: int = 5, repeat: int = 3,
               out=print, shapes: list[tuple[str, tuple[int, ...]]] | None = None
               ) -> list[dict]:
    """Plugin poolers against the built-in they are compared with, on the same input: the
    two are timed in alternating rounds (best of each), so that a drifting machine slows
    both alike; the ratio is what the target is about.

    ``shapes``: ``(label, shape)`` pairs, channels first, each with 1 to 3 spatial axes;
    by default ``[("asv", shape)]``, the asv per-pooler benchmarks' shape.
    ``pair_shapes(CASES)`` gives the shapes of the ``numbapool bench`` cases.

    Each plugin runs its window rule's first example at the shape's rank.  Where that
    writes a different number of outputs than the built-in (``outputs``: the plugin's count
    over the built-in's) and the rule takes ``output_size``, a second row (geometry
    ``same out``) runs the plugin at the built-in's output size: fractional pooling at
    ``output_ratio=0.7`` writes 1.94 times as many outputs as the 3x3/s2 max pool of the
    same input.  A third (``same out+k``) gives it the built-in's kernel size as well:
    fractional pooling's default 2x2 windows at half the input's size are the same in every
    plane (PyTorch's rule with a whole step), so only this row times windows drawn for each
    plane on the built-in's terms.

    Ends with a line per pair: the largest ratio among the rows where the two write the
    same number of outputs."""
    if shapes is None:
        shapes = [("asv", tuple(shape))]
    head = (f"{'shape':<13}{'plugin':<16}{'built-in':<10}{'layout':<15}{'geometry':<11}"
            f"{'plugin':>11}{'built-in':>11}{'outputs':>9}{'ratio':>8}")
    out(head)
    out("-" * len(head))
    rows = []
    installed = [(p, b) for p, b in pairs if p in poolers() and b in poolers()]
    for plugin, builtin in pairs:
        if (plugin, builtin) not in installed:
            out(f"{'':<13}{plugin:<16}{builtin:<10}(not installed)")
    for name, dims in shapes:
        rank = len(dims) - 2
        x_cf = np.random.default_rng(0).uniform(0.5, 1.5, dims).astype(np.float32)
        for plugin, builtin in installed:
            for layout in layouts:
                x = x_cf if layout == "channels_first" else np.ascontiguousarray(
                    np.moveaxis(x_cf, 1, -1))
                fb = partial(pool, builtin, x, layout=layout, **_pair_options(builtin, rank))
                geometries = [("example", _pair_options(plugin, rank))]
                b_out, p_out = _spatial(fb(), layout), _spatial(
                    pool(plugin, x, layout=layout, **geometries[0][1]), layout)
                geometries += _same_output_options(plugin, builtin, b_out, p_out, rank)
                for label, opts in geometries:
                    fp = partial(pool, plugin, x, layout=layout, **opts)
                    outputs = math.prod(_spatial(fp(), layout)) / math.prod(b_out)
                    tp = tb = math.inf
                    for _ in range(rounds):
                        tb = min(tb, best_time(fb, repeat=repeat, min_time=0.05))
                        tp = min(tp, best_time(fp, repeat=repeat, min_time=0.05))
                    rows.append(dict(shape=name, dims=tuple(dims), plugin=plugin,
                                     builtin=builtin, layout=layout, geometry=label,
                                     options=opts, plugin_time=tp, builtin_time=tb,
                                     outputs=outputs, ratio=tp / tb))
                    out(f"{name:<13}{plugin:<16}{builtin:<10}{layout:<15}{label:<11}"
                        f"{tp * 1e3:>9.3f}ms{tb * 1e3:>9.3f}ms{outputs:>8.2f}x{tp / tb:>7.2f}x")
    for plugin, builtin in installed:
        same = [r for r in rows if r["plugin"] == plugin and r["outputs"] == 1.0]
        if same:
            worst = max(same, key=lambda r: r["ratio"])
            out(f"{plugin} / {builtin}: at most {worst['ratio']:.2f}x where the outputs "
                f"match ({worst['shape']} {worst['layout']} {worst['geometry']})")
    return rows


def pair_shapes(cases=CASES) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of each case, for :func:`time_pairs`."""
    return [(c.name, tuple(c.shape)) for c in cases]


def _spatial(y: np.ndarray, layout: str) -> tuple[int, ...]:
    return tuple(y.shape[2:] if layout == "channels_first" else y.shape[1:-1])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="numbapool bench", description=__doc__)
    parser.add_argument("--backward", action="store_true", help="also time pool_grad")
    parser.add_argument("--recompute", action="store_true",
                        help="time pool_grad of max/min without the forward's indices "
                        "(it recomputes the forward)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--case", action="append", help="only these cases (by name)")
    parser.add_argument("--layout", action="append",
                        choices=["channels_first", "channels_last"])
    parser.add_argument("--plugins", action="store_true",
                        help="only the plugin poolers against their built-ins (gem / avg, "
                        f"fractional_max / max), timed alternately: on {PAIR_SHAPE} (the "
                        "asv per-pooler shape), or with --case on those cases' shapes "
                        "('--case all': that shape and every case's)")
    parser.add_argument("--target", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: device arrays, against PyTorch CUDA (cuDNN) and the "
                        "device-memory roofline")
    args = parser.parse_args(argv)
    known = [c.name for c in CASES] + (["all"] if args.plugins else [])
    unknown = [name for name in args.case or () if name not in known]
    if unknown:
        parser.error(f"--case: no case {', '.join(map(repr, unknown))}; the cases are "
                     f"{', '.join(known)}")
    cases = [c for c in CASES if not args.case or c.name in args.case]
    layouts = tuple(args.layout or ("channels_first", "channels_last"))
    if args.plugins:
        before = numba.get_num_threads()
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            shapes = [("asv", PAIR_SHAPE)] if not args.case or "all" in args.case else []
            shapes += pair_shapes([c for c in CASES if args.case and (
                "all" in args.case or c.name in args.case)])
            time_pairs(layouts=layouts, shapes=shapes)
        finally:
            numba.set_num_threads(before)
        return 0
    if args.target == "cuda":
        from .bench_cuda import run_cuda

        run_cuda(cases, layouts, backward=args.backward, repeat=args.repeat,
                 recompute=args.recompute)
    else:
        run(cases, layouts, backward=args.backward, threads=args.threads, repeat=args.repeat,
            recompute=args.recompute)
    return 0
