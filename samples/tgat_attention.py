"""A TGAT-style temporal graph attention layer, math attention against PyTorch SDPA.

This is the attention-kernel part of the audit (design.md section 1). Each input is one
*sequence* of timestamped events (the audit's "sessions" of 117, 203, 223, 225 and 268 events,
plus 512 and 1024; here called sequences so as not to clash with perfmon's sessions). One
forward pass of the layer, in the spirit of TGAT (D. Xu et al., "Inductive Representation
Learning on Temporal Graphs", ICLR 2020):

1. a functional time encoding Φ(t) = cos(t ω + φ), ω_k = 10^(-9 k / (d_t - 1)) (the geometric
   frequency ladder of TGAT's reference implementation), projected and added to each event's
   features;
2. queries, keys and values by linear maps, split into ``--heads`` heads;
3. an additive attention bias per head and pair of events: a time-bias term
   b_h(i, j) = u_h · Φ(t_i - t_j) / sqrt(d_t), plus a mask (0 or -inf): ``causal`` (an event
   attends to itself and earlier events), ``time`` (causal and within ``--window`` seconds) or
   ``block`` (block-sparse: causal, and only the key blocks of ``--block-size`` events that
   are the query's own block or the one before);
4. attention, softmax(Q Kᵀ / sqrt(d_h) + bias) V, by one of three implementations chosen by
   ``--attention`` / ``TGAT_ATTENTION``: ``math`` (the baseline: the formula written out in
   torch operations, dense over all L x L scores), ``sdpa`` (``torch.nn.functional.
   scaled_dot_product_attention`` with the same bias as ``attn_mask``) or ``blocksparse``
   (with ``--mask block`` only: each query block attends to the keys of its kept blocks only,
   tile by tile, so 2 nb - 1 of nb² tiles are computed; ``blocksparse_forward``);
5. output projection, residual and layer normalisation.

Options a variant may change, one at a time: ``--time-bias cached`` (the bias of a sequence is
computed on its first pass and reused on later passes, as an inference server scoring the same
sequences would), ``--bucket on`` (sequences grouped by length rounded up to ``--bucket-width``
and run as padded batches, padding masked out), ``--autocast on`` (``torch.autocast`` to
bfloat16 on CPU, float16 on CUDA). The device is CUDA when torch sees one, else CPU
(``--device``); on CUDA every timing is taken after ``torch.cuda.synchronize()``. A campaign
should give each session one length (``--lengths {length}`` with a matrix).

Metrics (probe protocol, docs/protocol.md):

- ``tgat_pass_seconds`` (histogram): one pass of the layer over every sequence, ``--repeat``
  times (the time-bias cache, when on, fills during the first pass);
- ``tgat_events_per_second`` (gauge): events / pass time, per pass;
- ``tgat_time_bias_seconds`` (histogram): time spent building time-bias terms, per pass;
- ``tgat_max_abs_diff`` (value): max |float32 math - this session's configuration| over every
  valid output element, on identical inputs (the parity gate's metric);
- ``sdpa_max_abs_diff`` (value): max |math - sdpa|, both with this session's autocast setting;
- ``tgat_tiles_computed``, ``tgat_tiles_dense`` (values): attention tiles of ``--block-size``
  events computed per pass, and how many a dense computation covers;
- ``tgat_cuda`` (value, 1 or 0), ``tgat_compute_bits`` (value: 32, or 16 under autocast): the
  device and dtype (the log line also names them, with the kernel and torch version);
- ``tgat_length`` (value): the sequence length, when the session has one;
- ``tgat_padding_ratio`` (value): padded positions / real events (0 without bucketing);
- ``tgat_events_total`` (counter): events through the layer, per pass.

Outside perfmon (``PERFMON_FD`` unset) the probe calls do nothing and the script runs alone.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perfmon import probe

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - exercised only without the torch extra
    torch = None  # type: ignore[assignment]

DEFAULT_LENGTHS = "117,203,223,225,268,512,1024"
MASKS = ("causal", "time", "block")
ATTENTION_IMPLS = ("math", "sdpa", "blocksparse")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; defaults come from ``TGAT_*`` environment variables.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The parsed options, with ``lengths`` as a list of ints.
    """
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="TGAT-style temporal attention layer: explicit math attention vs "
        "torch scaled_dot_product_attention, timed and parity-checked through the perfmon probe."
    )
    p.add_argument(
        "--lengths",
        default=env("TGAT_LENGTHS", DEFAULT_LENGTHS),
        help=f"comma-separated sequence lengths in events (default {DEFAULT_LENGTHS})",
    )
    p.add_argument("--copies", type=int, default=1, help="sequences per length (default 1)")
    p.add_argument("--dim", type=int, default=64, help="model width d_model (default 64)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--time-dim", type=int, default=16, help="time-encoding width (default 16)")
    p.add_argument(
        "--attention",
        choices=ATTENTION_IMPLS,
        default=env("TGAT_ATTENTION", "math"),
        help="attention implementation: math, sdpa, or blocksparse (block-wise over the kept "
        "blocks of the block mask only) (default: $TGAT_ATTENTION or math)",
    )
    p.add_argument(
        "--mask",
        choices=MASKS,
        default=env("TGAT_MASK", "causal"),
        help="attention mask (default: $TGAT_MASK or causal)",
    )
    p.add_argument(
        "--window", type=float, default=900.0, help="time mask look-back, seconds (default 900)"
    )
    p.add_argument("--block-size", type=int, default=64, help="block-sparse block (default 64)")
    p.add_argument(
        "--time-bias",
        choices=("fresh", "cached"),
        default=env("TGAT_TIME_BIAS", "fresh"),
        help="recompute the time bias every pass, or cache it per sequence "
        "(default: $TGAT_TIME_BIAS or fresh)",
    )
    p.add_argument(
        "--bucket",
        choices=("off", "on"),
        default=env("TGAT_BUCKET", "off"),
        help="batch sequences by padded length (default: $TGAT_BUCKET or off)",
    )
    p.add_argument("--bucket-width", type=int, default=64, help="bucket rounding (default 64)")
    p.add_argument(
        "--autocast",
        choices=("off", "on"),
        default=env("TGAT_AUTOCAST", "off"),
        help="torch.autocast to bfloat16 (CPU) / float16 (CUDA) (default: $TGAT_AUTOCAST or off)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=env("TGAT_DEVICE", "auto"),
        help="auto = CUDA when present, else CPU (default: $TGAT_DEVICE or auto)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on 2 shared cores more threads only add noise)",
    )
    p.add_argument("--repeat", type=int, default=10, help="timed passes (default 10)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed for inputs and weights")
    args = p.parse_args(argv)
    for name, value, choices in (
        ("TGAT_ATTENTION", args.attention, ATTENTION_IMPLS),
        ("TGAT_MASK", args.mask, MASKS),
        ("TGAT_TIME_BIAS", args.time_bias, ("fresh", "cached")),
        ("TGAT_BUCKET", args.bucket, ("off", "on")),
        ("TGAT_AUTOCAST", args.autocast, ("off", "on")),
        ("TGAT_DEVICE", args.device, ("auto", "cpu", "cuda")),
    ):
        if value not in choices:
            p.error(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    try:
        args.lengths = [int(x) for x in str(args.lengths).split(",") if x.strip()]
    except ValueError:
        p.error(f"--lengths must be comma-separated integers, not {args.lengths!r}")
    if not args.lengths or min(args.lengths) < 1:
        p.error("--lengths needs at least one length, each >= 1")
    if args.dim % args.heads or args.dim < 1 or args.heads < 1:
        p.error("--dim must be a positive multiple of --heads")
    if min(args.copies, args.repeat, args.time_dim, args.block_size, args.bucket_width) < 1:
        p.error("--copies, --repeat, --time-dim, --block-size, --bucket-width must be >= 1")
    if args.time_dim < 2:
        p.error("--time-dim must be >= 2")
    if args.attention == "blocksparse" and (args.mask != "block" or args.bucket == "on"):
        p.error("--attention blocksparse computes the block mask: use --mask block, --bucket off")
    return args


@dataclass
class Batch:
    """A padded batch of sequences run through the layer in one call.

    Attributes:
        x: (B, L, d_model) event features, zero in padding.
        t: (B, L) event times in seconds, increasing; padding repeats the last time.
        lengths: the B real lengths (each <= L).
        bias_cache: the cached (B, H, L, L) attention bias, when ``--time-bias cached``.
    """

    x: torch.Tensor
    t: torch.Tensor
    lengths: list[int]
    bias_cache: torch.Tensor | None = field(default=None)


class TemporalAttention:
    """A TGAT-style attention layer with fixed random weights.

    Args:
        dim: model width d_model (a multiple of ``heads``).
        heads: number of heads H.
        time_dim: time-encoding width d_t.
        generator: torch generator for the weights (Xavier-style scale 1/sqrt(fan_in)).
        device: torch device.
    """

    def __init__(
        self, dim: int, heads: int, time_dim: int, generator: torch.Generator, device: str
    ) -> None:
        def w(*shape: int) -> torch.Tensor:
            return (torch.randn(*shape, generator=generator) / math.sqrt(shape[0])).to(device)

        self.dim, self.heads, self.time_dim = dim, heads, time_dim
        self.wq, self.wk, self.wv, self.wo = (w(dim, dim) for _ in range(4))
        self.wt = w(time_dim, dim)  # absolute time encoding -> features
        self.u = w(time_dim, heads)  # relative time encoding -> per-head bias
        # TGAT's frequency ladder: omega_k = 1 / 10^(9 k / (d_t - 1)), phases zero.
        k = torch.arange(time_dim, dtype=torch.float32)
        self.omega = (1.0 / 10.0 ** (9.0 * k / (time_dim - 1))).to(device)
        self.phase = torch.zeros(time_dim, device=device)

    def encode(self, dt: torch.Tensor) -> torch.Tensor:
        """Functional time encoding Φ(dt) = cos(dt ω + φ).

        Args:
            dt: any shape, seconds.

        Returns:
            ``dt.shape + (d_t,)``.
        """
        return torch.cos(dt.unsqueeze(-1) * self.omega + self.phase)

    def time_bias(self, t: torch.Tensor) -> torch.Tensor:
        """The time-bias term b_h(i, j) = u_h · Φ(t_i - t_j) / sqrt(d_t).

        Args:
            t: (B, L) times in seconds.

        Returns:
            (B, H, L, L) float32 bias.
        """
        dt = t[:, :, None] - t[:, None, :]
        bias = self.encode(dt) @ self.u / math.sqrt(self.time_dim)  # (B, L, L, H)
        return bias.permute(0, 3, 1, 2).contiguous()

    def time_bias_between(self, tq: torch.Tensor, tk: torch.Tensor) -> torch.Tensor:
        """The time-bias term between query times and key times (one tile of ``time_bias``).

        Args:
            tq: (B, Lq) query times in seconds.
            tk: (B, Lk) key times in seconds.

        Returns:
            (B, H, Lq, Lk) float32 bias.
        """
        dt = tq[:, :, None] - tk[:, None, :]
        bias = self.encode(dt) @ self.u / math.sqrt(self.time_dim)
        return bias.permute(0, 3, 1, 2)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, bias: torch.Tensor, impl: str
    ) -> torch.Tensor:
        """One pass of the layer.

        Args:
            x: (B, L, d_model) features.
            t: (B, L) times in seconds.
            bias: (B, H, L, L) additive attention bias (time bias plus a 0/-inf mask).
            impl: ``"math"`` or ``"sdpa"``.

        Returns:
            (B, L, d_model) outputs.
        """
        b, n, d = x.shape
        h = x + self.encode(t - t[:, :1]) @ self.wt
        dh = d // self.heads

        def split(m: torch.Tensor) -> torch.Tensor:
            return (h @ m).view(b, n, self.heads, dh).transpose(1, 2)

        q, k, v = split(self.wq), split(self.wk), split(self.wv)
        if impl == "math":
            scores = q @ k.transpose(-2, -1) / math.sqrt(dh) + bias
            att = torch.softmax(scores, dim=-1) @ v
        else:
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        out = att.transpose(1, 2).reshape(b, n, d) @ self.wo
        return F.layer_norm(x + out, (d,))


def kept_blocks(n: int, block: int) -> list[tuple[int, int]]:
    """The (query block, key block) pairs the block mask keeps: own block and the one before.

    Args:
        n: sequence length L.
        block: block size in events.

    Returns:
        The kept pairs, by query block: 2 nb - 1 of the nb² pairs for nb = ceil(L / block).
    """
    nb = -(-n // block)
    return [(qb, kb) for qb in range(nb) for kb in (qb - 1, qb) if kb >= 0]


def blocksparse_forward(
    layer: TemporalAttention, x: torch.Tensor, t: torch.Tensor, block: int
) -> tuple[torch.Tensor, int]:
    """One pass of the layer with block-sparse attention computed block by block.

    The block mask (causal, and only key blocks that are the query's own block or the one
    before, ``make_mask`` with ``--mask block``) keeps 2 nb - 1 of nb² blocks. Instead of a
    dense (L, L) score matrix that is mostly -inf, each query block attends only to the keys of
    its kept blocks: scores, time bias and softmax are computed on (block, <= 2 block) tiles,
    so work and memory grow as L · block instead of L² (the block-sparse attention of R. Child
    et al., "Generating Long Sequences with Sparse Transformers", 2019, with a local pattern).
    The time bias of each tile is computed fresh from the tile's times.

    Args:
        layer: the layer.
        x: (B, L, d_model) features (no padding: B sequences of the same length).
        t: (B, L) times in seconds.
        block: block size in events.

    Returns:
        The (B, L, d_model) outputs, equal (up to float rounding) to ``layer.forward`` with the
        dense block mask, and the number of (query block, key block) tiles computed.
    """
    b, n, d = x.shape
    h = x + layer.encode(t - t[:, :1]) @ layer.wt
    dh = d // layer.heads

    def split(m: torch.Tensor) -> torch.Tensor:
        return (h @ m).view(b, n, layer.heads, dh).transpose(1, 2)

    q, k, v = split(layer.wq), split(layer.wk), split(layer.wv)
    att = torch.empty_like(q)
    tiles = 0
    for q0 in range(0, n, block):
        q1 = min(q0 + block, n)
        k0 = max(0, q0 - block)
        tiles += 1 + (k0 < q0)
        qs, ks, vs = q[:, :, q0:q1], k[:, :, k0:q1], v[:, :, k0:q1]
        scores = qs @ ks.transpose(-2, -1) / math.sqrt(dh)
        scores = scores + layer.time_bias_between(t[:, q0:q1], t[:, k0:q1])
        qi = torch.arange(q0, q1, device=x.device)[:, None]
        ki = torch.arange(k0, q1, device=x.device)[None, :]
        scores = scores.masked_fill(ki > qi, float("-inf"))
        att[:, :, q0:q1] = torch.softmax(scores, dim=-1) @ vs
    out = att.transpose(1, 2).reshape(b, n, d) @ layer.wo
    return F.layer_norm(x + out, (d,)), tiles


def make_mask(batch: Batch, args: argparse.Namespace) -> torch.Tensor:
    """The additive 0/-inf mask of a batch.

    Args:
        batch: the padded batch (padding keys are always masked out).
        args: options (``mask``, ``window``, ``block_size``).

    Returns:
        (B, 1, L, L) float32 mask: 0 where query i may attend key j, -inf elsewhere. Every
        query row keeps at least its own position (or, for padding rows, position 0).
    """
    bsz, n = batch.t.shape
    dev = batch.t.device
    i = torch.arange(n, device=dev)
    allowed = (i[None, :] <= i[:, None]).expand(bsz, n, n).clone()  # causal
    if args.mask == "time":
        dt = batch.t[:, :, None] - batch.t[:, None, :]
        allowed &= dt <= args.window
    elif args.mask == "block":
        qb, kb = i[:, None] // args.block_size, i[None, :] // args.block_size
        allowed &= (kb == qb) | (kb == qb - 1)
    real = torch.arange(n, device=dev)[None, :] < torch.tensor(batch.lengths, device=dev)[:, None]
    allowed &= real[:, None, :]
    allowed[:, :, 0] |= ~real  # padding query rows attend key 0, so no row is all -inf
    mask = torch.zeros(bsz, 1, n, n, device=dev)
    mask.masked_fill_(~allowed[:, None], float("-inf"))
    return mask


def make_batches(args: argparse.Namespace, device: str) -> list[Batch]:
    """Synthetic sequences, batched one by one or by bucket.

    Each sequence has standard-normal features and event times with exponential gaps of 30 s
    on average (numpy RNG seeded with ``--seed``).

    Args:
        args: options (``lengths``, ``copies``, ``dim``, ``bucket``, ``bucket_width``, ``seed``).
        device: torch device.

    Returns:
        The batches: one per sequence without bucketing; with it, one per padded length
        (the length rounded up to a multiple of ``bucket_width``).
    """
    rng = np.random.default_rng(args.seed)
    seqs = []
    for n in args.lengths:
        for _ in range(args.copies):
            x = rng.standard_normal((n, args.dim)).astype(np.float32)
            t = np.cumsum(rng.exponential(30.0, size=n))
            seqs.append((x, t - t[0]))
    if args.bucket == "off":
        groups = [[s] for s in seqs]
    else:
        by_width: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for s in seqs:
            width = -(-len(s[1]) // args.bucket_width) * args.bucket_width
            by_width.setdefault(width, []).append(s)
        groups = [by_width[w] for w in sorted(by_width)]
    batches = []
    for group in groups:
        lengths = [len(t) for _, t in group]
        n = (
            len(group[0][1])
            if args.bucket == "off"
            else -(-max(lengths) // args.bucket_width) * args.bucket_width
        )
        x = np.zeros((len(group), n, args.dim), dtype=np.float32)
        t = np.zeros((len(group), n), dtype=np.float32)
        for b, (xs, ts) in enumerate(group):
            x[b, : len(ts)] = xs
            t[b, : len(ts)] = ts
            t[b, len(ts) :] = ts[-1]
        batches.append(
            Batch(torch.from_numpy(x).to(device), torch.from_numpy(t).to(device), lengths)
        )
    return batches


def attention_bias(
    layer: TemporalAttention, batch: Batch, args: argparse.Namespace
) -> torch.Tensor:
    """Time bias plus mask for a batch, from the cache when ``--time-bias cached`` filled it."""
    if batch.bias_cache is not None:
        return batch.bias_cache
    bias = layer.time_bias(batch.t) + make_mask(batch, args)
    if args.time_bias == "cached":
        batch.bias_cache = bias
    return bias


def max_abs_diff(a: torch.Tensor, b: torch.Tensor, lengths: Sequence[int]) -> float:
    """Max |a - b| over the real (unpadded) rows of two (B, L, d) outputs."""
    return max(
        float((a[i, :n].float() - b[i, :n].float()).abs().max()) for i, n in enumerate(lengths)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status: 0; 2 when torch (the ``torch`` extra) or a requested CUDA device is
        missing.
    """
    args = parse_args(argv)
    if torch is None:
        print("tgat_attention: needs torch (pip install -e '.[torch]')", file=sys.stderr)
        return 2
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        print("tgat_attention: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    gen = torch.Generator().manual_seed(args.seed)
    layer = TemporalAttention(args.dim, args.heads, args.time_dim, gen, args.device)
    batches = make_batches(args, args.device)
    events = sum(sum(b.lengths) for b in batches)
    positions = sum(b.x.shape[0] * b.x.shape[1] for b in batches)
    amp_dtype = torch.float16 if cuda else torch.bfloat16

    def autocast() -> torch.autocast:
        return torch.autocast(args.device, dtype=amp_dtype, enabled=args.autocast == "on")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    if args.attention == "blocksparse" and args.time_bias == "cached":
        print(
            "tgat_attention: blocksparse computes its bias per tile; use --time-bias fresh",
            file=sys.stderr,
        )
        return 2
    compute_dtype = amp_dtype if args.autocast == "on" else torch.float32
    kernel = {
        "math": "math (explicit softmax(QK^T/sqrt(d) + bias) V)",
        "sdpa": "torch.nn.functional.scaled_dot_product_attention",
        "blocksparse": f"block-wise over kept {args.block_size}-event blocks",
    }[args.attention]

    def run_once(batch: Batch, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """One forward pass of a batch in this session's configuration; tiles computed."""
        with autocast():
            if args.attention == "blocksparse":
                return blocksparse_forward(layer, batch.x, batch.t, args.block_size)
            if bias is None:
                bias = attention_bias(layer, batch, args)
            nb = -(-batch.x.shape[1] // args.block_size)
            return layer.forward(batch.x, batch.t, bias, args.attention), nb * nb

    perf = time.perf_counter
    passes: list[float] = []
    tiles = dense_tiles = 0
    with torch.inference_mode():
        # Parity first, on a fresh bias so that the timed passes start with an empty cache.
        diff = session_diff = 0.0
        for batch in batches:
            bias = layer.time_bias(batch.t) + make_mask(batch, args)
            reference = layer.forward(batch.x, batch.t, bias, "math")  # float32, no autocast
            with autocast():
                out_math = layer.forward(batch.x, batch.t, bias, "math")
                out_sdpa = layer.forward(batch.x, batch.t, bias, "sdpa")
            diff = max(diff, max_abs_diff(out_math, out_sdpa, batch.lengths))
            out, _ = run_once(batch)
            batch.bias_cache = None
            session_diff = max(session_diff, max_abs_diff(reference, out, batch.lengths))
        probe.value("sdpa_max_abs_diff", diff)
        probe.value("tgat_max_abs_diff", session_diff)
        probe.value("tgat_padding_ratio", positions / events - 1.0)
        probe.value("tgat_cuda", 1.0 if cuda else 0.0)
        probe.value("tgat_compute_bits", float(torch.finfo(compute_dtype).bits))
        if len(set(args.lengths)) == 1:
            probe.value("tgat_length", float(args.lengths[0]))
        for _ in range(args.repeat):
            bias_s = 0.0
            tiles = dense_tiles = 0
            sync()
            t0 = perf()
            for batch in batches:
                bias = None
                if args.attention != "blocksparse":
                    b0 = perf()
                    bias = attention_bias(layer, batch, args)  # fills the cache when cached
                    sync()
                    bias_s += perf() - b0
                _, computed = run_once(batch, bias)
                nb = -(-batch.x.shape[1] // args.block_size)
                tiles += computed * batch.x.shape[0]
                dense_tiles += nb * nb * batch.x.shape[0]
            sync()
            elapsed = perf() - t0
            passes.append(elapsed)
            probe.observe("tgat_pass_seconds", elapsed)
            probe.observe("tgat_time_bias_seconds", bias_s)
            probe.gauge("tgat_events_per_second", events / elapsed)
            probe.count("tgat_events_total", events)
        probe.value("tgat_tiles_computed", float(tiles))
        probe.value("tgat_tiles_dense", float(dense_tiles))
    print(
        f"tgat_attention attention={args.attention} mask={args.mask} time_bias={args.time_bias} "
        f"bucket={args.bucket} autocast={args.autocast} device={args.device} "
        f"dtype={str(compute_dtype).removeprefix('torch.')} kernel={kernel} "
        f"torch={torch.__version__}: "
        f"{len(args.lengths) * args.copies} sequences, {events} events in {len(batches)} batches; "
        f"{tiles} of {dense_tiles} {args.block_size}-event tiles computed per pass; "
        f"pass median {np.median(passes) * 1e3:.2f} ms over {args.repeat}; "
        f"parity max|math-sdpa| {diff:.3g}, max|fp32 math - this configuration| {session_diff:.3g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
