"""Nyström kernel logistic regression with per-event weights.

The model is ``f(x) = sum_j a_j k(x, c_j)`` with a Gaussian kernel
``k(x, x') = exp(-|x - x'|^2 / (2 sigma^2))`` and centres ``c_j`` drawn uniformly
from the training set. It minimises

    J(a) = (1/n) sum_i s_i * softplus(-(2 y_i - 1) f(x_i)) + (lam/2) a^T K_MM a,

the mean weighted logistic loss plus an RKHS penalty, by Newton's method.

Solver outline (what makes it fast and what it guarantees)
----------------------------------------------------------
1. **Rank-revealing basis.** A block-greedy pivoted Cholesky of ``K_MM`` (float64,
   no jitter) picks ``r <= M`` pivot centres ``P`` whose span contains every other
   candidate centre up to a squared RKHS distance ``rank_tol`` (the residual
   diagonal of the factorisation). With ``K_PP = L_P L_P^T`` the features
   ``phi(x) = L_P^{-1} k_P(x)`` make the penalty Euclidean: ``a^T K a = |beta|^2``
   with ``beta = L_P^T a``. Directions dropped by the tolerance are functions whose
   values on the centres are below ``sqrt(rank_tol)`` per unit RKHS norm; for a
   smooth kernel in few dimensions ``r`` is tiny (about 15 for the 1D benchmark,
   whatever ``M``), which is where most of the speed comes from.
2. **Newton steps in beta-space.** Gradient ``Phi^T l'/n + lam beta`` and Hessian
   ``Phi^T D Phi/n + lam I``. The inner linear system is solved either exactly
   (Cholesky of the ``r x r`` Hessian, float64) or by preconditioned conjugate
   gradient. The preconditioner is the Hessian estimated on a subsample of the
   events, factorised by Cholesky in float64: for the converged schedule a
   weight-proportional subsample (:data:`PRECOND_SAMPLE_FACTOR`), for the published
   one-step schedule the Falkon-style estimate on the ``M`` candidate centres,
   ``(1/M) L^T D_M L + lam I``, whose truncated CG solve defines that statistic.
   Any jitter is added to the preconditioner only, never to the problem.
3. **Globalisation and stopping.** Backtracking (Armijo) line search on ``J``;
   stop when the Newton decrement says ``n (J - J*) <= tol`` (the suboptimality of
   the summed loss, the scale on which the test statistic lives). The published
   schedule (one undamped Newton step from zero, PCG tolerance ``sqrt(1e-7)``) is
   available as ``schedule="onestep"``.
4. **Memory.** ``Phi`` (``n x r``) is materialised only when it fits the memory
   budget; otherwise kernel blocks of at most ``block_bytes`` are computed on the
   fly for every product. ``n x M`` is never formed. Narrow kernels keep only the
   kernel columns of the centres within reach of each block of sorted events
   (``"window"`` features, see :class:`_Features`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._torch_utils import (
    default_memory_budget,
    device_memory_bytes,
    resolve_device,
    resolve_dtype,
)
from ..errors import InputError
from ..stats import is_real
from ._base import EstimatorProtocol

__all__ = [
    "FitInfo",
    "KernelLogisticRegression",
    "default_n_centers",
    "gaussian_kernel",
    "pivoted_cholesky",
    "reuse_feature_memory",
]

log = logging.getLogger(__name__)

#: Schedules understood by the solver.
SCHEDULES = ("converged", "onestep")
#: Inner solvers understood by the solver.
INNER_SOLVERS = ("auto", "direct", "cg")
#: PCG preconditioners: Hessian estimated on the centres or on a weighted subsample.
PRECONDITIONERS = ("centres", "sample")
#: ``inner="auto"`` uses the direct solve up to this rank, PCG above it.
AUTO_DIRECT_MAX_RANK = 512
#: Largest PCG relative residual at which a Newton decrement is trusted for stopping.
CG_TRUST_RESIDUAL = 0.1
#: Direct inner solve: a factorised Hessian is reused for later Newton steps while
#: every event's loss curvature is within this factor of the one it was built with.
HESSIAN_REUSE_FACTOR = 2.0
#: Smallest pivoted-Cholesky tolerance: residuals below it are float64 rounding noise.
RANK_TOL_FLOOR = 1e-15
#: Smallest ``rank_tol`` accepted with float32 kernels (the lower end of their default).
RANK_TOL_FLOOR_FLOAT32 = 1e-5
#: Default CG relative tolerance of the published one-step schedule.
ONESTEP_CG_TOL = math.sqrt(1e-7)
#: PCG relative tolerance of the warm-start solve (a starting point needs no more).
WARM_START_CG_TOL = 1e-3
#: Converged schedule: the PCG preconditioner is the Hessian estimated on about
#: ``min(n, PRECOND_SAMPLE_FACTOR * r, 4 M, PRECOND_COST_FACTOR * n / r)`` events
#: drawn with probability proportional to their weight (systematic sampling,
#: Horvitz-Thompson weights), or on the ``M`` centres when that is not more than
#: ``M``. The centres alone under-represent a small, heavily weighted data sample
#: (1% of the events in the 1D benchmark, half of the Hessian).
PRECOND_SAMPLE_FACTOR = 16
#: Caps the subsample so that building the preconditioner (about ``4 s r^2``
#: flops: the subsample's features, then their Gram matrix) costs at most as many
#: flops as ``PRECOND_COST_FACTOR`` Hessian-vector products (``4 n r`` flops each,
#: memory-bound, so slower per flop): beyond that the build outweighs the CG
#: iterations it saves (5D, r = 3000: 48000 events cost more than 12 iterations
#: saved). The factor was set by timing.
PRECOND_COST_FACTOR = 80
#: Preconditioner of the converged schedule (``"centres"`` restores the Falkon
#: estimate; the solution is the same to the convergence tolerance, only the CG
#: iteration count changes). The one-step schedule always uses ``"centres"``.
CONVERGED_PRECONDITIONER = "sample"
#: Floor the kernel entries at :func:`negligible`, which keeps the arithmetic free
#: of subnormal numbers (``False`` restores the plain kernel, for benchmarks; ``t``
#: agrees to ~1e-13 relative in float64, to float32 rounding in float32).
KERNEL_FLOOR = True
#: Narrow kernels: store for each block of ``WINDOW_BLOCK`` events (sorted along one
#: coordinate) only the kernel columns of the centres whose distance along that
#: coordinate can give an entry above :func:`negligible` (the others are zero
#: instead of the floor), when the widest such window holds at most
#: ``WINDOW_MAX_FRACTION`` of the ``r`` centres (``"window"`` features). ``False``
#: restores the dense features, for benchmarks and tests.
WINDOWED_FEATURES = True
#: Events per block of the ``"window"`` features.
WINDOW_BLOCK = 256
#: Largest window, as a fraction of the rank, at which ``"window"`` features are used.
#: Measured (BENCHMARKS.md, "Where windows pay"): against a direct solve of the dense
#: features (1D ranks 47-112) windows lost from ~0.75 on; against dense PCG (2D, 5D)
#: they were never slower up to 1. 0.7 serves both.
WINDOW_MAX_FRACTION = 0.7


def default_n_centers(n: int) -> int:
    """Default number of candidate centres for ``n`` training events.

    ``M = max(1000, ceil(2 sqrt(n)))``, capped at ``n``. The published studies use
    ``M >~ sqrt(n)`` and find the 1D null distribution stable from ``M ~ 500``.
    """
    if n < 1:
        raise InputError("cannot choose a number of centres for an empty training set")
    return int(min(n, max(1000, math.ceil(2.0 * math.sqrt(n)))))


def default_rank_tol(lam: float, dtype: torch.dtype) -> float:
    """Default pivoted-Cholesky tolerance (squared RKHS residual per centre).

    ``1e-3 * lam`` clipped to ``[1e-13, 1e-6]`` in float64. For float32 kernels
    ``[1e-5, 1e-3]``: their entries carry relative errors of ~1e-7, amplified by
    up to ``1/sqrt(rank_tol)`` in the features, which leaves errors of ~1e-3 in
    ``f`` at the floor. Directions with a residual below the tolerance carry data
    curvature well below the penalty ``lam``; dropping them is part of the statistic
    and moved ``t`` by up to about 1% against an untruncated solve in 1D and 2D tests
    (the same truncation applies to the data and every toy). ``FitInfo.suboptimality``
    measures the distance to the optimum in the kept span.
    """
    if dtype == torch.float64:
        return float(min(max(1e-3 * lam, 1e-13), 1e-6))
    return float(min(max(1e-3 * lam, RANK_TOL_FLOOR_FLOAT32), 1e-3))


# ---------------------------------------------------------- feature memory


class FeatureMemory:
    """One block of host memory lent to the stored features of successive fits.

    A fit holds its features (``r x n`` numbers, 170 MB for the 1D benchmark at
    ``sigma = 0.1``) for its duration only. Allocated afresh, a block that large
    comes from the operating system each time (glibc maps allocations above
    32 MiB), and the first write to every page costs about as much as computing
    the features (1D, ``sigma = 0.1``: 0.04 s of a 0.28 s fit). Successive fits
    (the toys of a calibration) therefore borrow the block the previous fit gave
    back, grown to the largest size asked for.

    CPU only (the CUDA caching allocator already reuses device memory). The block
    is lent to one fit at a time, under a lock: a request while it is lent gets
    fresh memory, and only the borrower's token gives it back.
    """

    def __init__(self) -> None:
        self._block: torch.Tensor | None = None
        self._lent_to: int | None = None  # token of the fit holding the block
        self._tokens = 0
        self._lock = threading.Lock()

    def matrix(self, rows: int, cols: int, dtype: torch.dtype,
               device: torch.device) -> tuple[torch.Tensor, int | None]:
        """An uninitialised ``rows x cols`` matrix and the token to :meth:`release`
        it with when it is borrowed (``None``: fresh memory, nothing to give back)."""
        size = rows * cols
        token = None
        if torch.device(device).type == "cpu":
            with self._lock:
                if self._lent_to is None:
                    self._tokens += 1
                    token = self._lent_to = self._tokens
        if token is None:
            return torch.empty(rows, cols, dtype=dtype, device=device), None
        try:
            if (self._block is None or self._block.dtype != dtype
                    or self._block.numel() < size):
                self._block = None  # freed before its larger successor is allocated
                self._block = torch.empty(size, dtype=dtype)
            return self._block[:size].view(rows, cols), token
        except BaseException:
            self.release(token)
            raise

    def release(self, token: int | None) -> None:
        """Take the block back from the fit holding ``token`` (its contents may be
        overwritten from now on); any other token is ignored."""
        if token is None:
            return
        with self._lock:
            if self._lent_to == token:
                self._lent_to = None

    def discard(self) -> None:
        """Free the block unless a fit holds it: before work that does not use it
        (window or lazy features, comparison tests, a retry after running out of
        memory), so that it does not add to that work's peak memory."""
        with self._lock:
            if self._lent_to is None:
                self._block = None


_FEATURE_MEMORY: contextvars.ContextVar[FeatureMemory | None] = contextvars.ContextVar(
    "nplearn_feature_memory", default=None)


@contextlib.contextmanager
def reuse_feature_memory() -> Iterator[FeatureMemory]:
    """Let the kernel fits run inside this block share one feature buffer.

    Used around the toy loops of a calibration, whose fits are sequential; no
    fitted model refers to its training features after :meth:`fit` returns. The
    buffer belongs to the current context (each thread starts with its own;
    contexts copied into other threads share it, and then fits that overlap in
    time get fresh memory). It is freed when the block exits. Results are
    bit-identical with and without it.
    """
    memory = FeatureMemory()
    token = _FEATURE_MEMORY.set(memory)
    try:
        yield memory
    finally:
        _FEATURE_MEMORY.reset(token)
        memory.discard()


_WARN_NOT_CONVERGED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "nplearn_warn_not_converged", default=True)


@contextlib.contextmanager
def quiet_convergence() -> Iterator[None]:
    """Inside this block a fit that does not converge logs at DEBUG level, not as a
    warning: the toy fits of a calibration, which its result counts and reports."""
    token = _WARN_NOT_CONVERGED.set(False)
    try:
        yield
    finally:
        _WARN_NOT_CONVERGED.reset(token)


def current_feature_memory() -> FeatureMemory | None:
    """The :class:`FeatureMemory` of the enclosing :func:`reuse_feature_memory`."""
    return _FEATURE_MEMORY.get()


def discard_idle_feature_memory() -> None:
    """Free the enclosing :func:`reuse_feature_memory` block unless a fit holds it."""
    memory = _FEATURE_MEMORY.get()
    if memory is not None:
        memory.discard()


# --------------------------------------------------------------------------- kernel


def negligible(dtype: torch.dtype) -> float:
    """Floor of the kernel entries (see :func:`gaussian_kernel`).

    ``tiny ** (1/8)`` in float64 (about 3.5e-39), ``tiny ** (1/4)`` in float32
    (about 3.3e-10), where ``tiny`` is the dtype's smallest normal number. Kernel
    entries this small cannot change ``f`` appreciably (the coefficients are
    bounded by the penalty), but the exact ones underflow: x86 CPUs compute
    ``exp`` of arguments below about -708, and products that land below ``tiny``
    (subnormal numbers), on a slow path up to ~100x slower. Narrow kernels, whose
    entries span hundreds of orders of magnitude, spent most of a fit there (1D,
    sigma = 0.01, direct solve: 33 s, 6 s with the floor, the same ``t`` to
    ~1e-15). The entries of ``L_P^{-1}`` below the floor are zeroed as well. In
    float64 that fit then holds no subnormal number in its features, Hessian or
    factors (a product of two floored entries is still above ``tiny``).
    """
    tiny = float(torch.finfo(dtype).tiny)
    return tiny ** 0.125 if dtype == torch.float64 else tiny ** 0.25


def _sq_dist(X: torch.Tensor, C: torch.Tensor, max_value: float = math.inf) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``X`` and ``C``, clipped to
    ``[0, max_value]``."""
    if X.shape[1] == 1:
        D = (X - C.T).square_()
        return D if max_value == math.inf else D.clamp_max_(max_value)
    x2 = X.square().sum(1, keepdim=True)
    c2 = C.square().sum(1)
    D = torch.addmm(x2 + c2, X, C.T, alpha=-2.0)
    return D.clamp_(0.0, max_value)


def _distance_cap(sigma: float, dtype: torch.dtype) -> float:
    """Squared distance beyond which every kernel entry is below :func:`negligible`
    (``inf`` without the floor, or when the cap overflows the dtype)."""
    cap = -2.0 * sigma * sigma * math.log(negligible(dtype)) if KERNEL_FLOOR else math.inf
    return cap if cap <= torch.finfo(dtype).max else math.inf


def gaussian_kernel(X: torch.Tensor, C: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian kernel matrix ``exp(-|x - c|^2 / (2 sigma^2))`` (dense, one block).

    Entries below :func:`negligible` are raised to it: the distance is clipped
    before the exponential, which also keeps ``exp`` off its slow path for
    results that underflow.
    """
    return _sq_dist(X, C, _distance_cap(sigma, X.dtype)).mul_(-0.5 / (sigma * sigma)).exp_()


def _drop_negligible(A: torch.Tensor) -> torch.Tensor:
    """Zero the entries of ``A`` below :func:`negligible` in magnitude (in place).

    For ``L_P^{-1}``: the pivoted Cholesky runs in float64, so its small entries sit
    near the float64 floor, which is subnormal in float32.
    """
    if KERNEL_FLOOR:
        A.masked_fill_(A.abs() < negligible(A.dtype), 0.0)
    return A


@dataclass
class _WindowPlan:
    """Where each block of events finds its non-negligible kernel entries.

    Events sorted along coordinate ``axis`` (``perm``) form ``nb`` blocks of
    ``block`` events (the last one padded); block ``b`` is paired with the ``W``
    centres ``order[lo[b] : lo[b] + W]`` (centres sorted along the same axis),
    which hold every centre whose distance along that axis to some event of the
    block is below ``reach``: beyond it all kernel entries are below
    :func:`negligible`.
    """

    axis: int
    perm: torch.Tensor
    order: torch.Tensor
    lo: torch.Tensor
    width: int
    block: int

    @property
    def n_blocks(self) -> int:
        return int(self.lo.shape[0])


def _window_plan(X: torch.Tensor, P: torch.Tensor, sigma: float,
                 block: int = WINDOW_BLOCK) -> _WindowPlan | None:
    """The :class:`_WindowPlan` of ``X`` against centres ``P`` along the coordinate that
    gives the narrowest windows, or ``None`` when no coordinate gives windows of at
    most ``WINDOW_MAX_FRACTION * r`` centres (or windows are switched off)."""
    if not (WINDOWED_FEATURES and KERNEL_FLOOR) or X.shape[0] == 0:
        return None
    r = P.shape[0]
    reach = math.sqrt(_distance_cap(sigma, X.dtype))
    if not math.isfinite(reach) or r < 2:
        return None
    n = X.shape[0]
    nb = -(-n // block)
    best: _WindowPlan | None = None
    for axis in range(X.shape[1]):
        ps, order = torch.sort(P[:, axis])
        # The centres are events, so a window is at least as wide as the most
        # crowded stretch of 2 reach among the centres: a cheap early rejection.
        crowd = torch.searchsorted(ps, ps + reach, side="right") - torch.searchsorted(
            ps, ps - reach, side="left")
        if int(crowd.max()) > WINDOW_MAX_FRACTION * r:
            continue
        xs, perm = torch.sort(X[:, axis])
        first = xs[::block]
        last = xs[torch.clamp(torch.arange(1, nb + 1, device=X.device) * block, max=n) - 1]
        lo = torch.searchsorted(ps, first - reach, side="left")
        hi = torch.searchsorted(ps, last + reach, side="right")
        width = int((hi - lo).max())
        if best is None or width < best.width:
            # windows that would run past the last centre start earlier instead: every
            # block then pairs with exactly `width` centres (the extra ones are exact)
            lo = torch.clamp(lo, max=r - max(width, 1))
            best = _WindowPlan(axis, perm, order, lo, max(width, 1), block)
    if best is None or best.width > WINDOW_MAX_FRACTION * r:
        return None
    return best


# ------------------------------------------------------------- pivoted Cholesky


def pivoted_cholesky(
    C: torch.Tensor,
    sigma: float,
    tol: float,
    max_rank: int | None = None,
    block: int = 128,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Block-greedy pivoted Cholesky of the Gaussian kernel matrix of ``C``.

    Parameters
    ----------
    C : torch.Tensor
        Candidate centres, shape ``(M, d)``, float64.
    sigma : float
        Kernel width.
    tol : float
        Stop when every remaining residual diagonal (squared RKHS distance of a
        candidate to the span of the pivots) is ``<= tol``.
    max_rank : int, optional
        Upper bound on the number of pivots (default ``M``).
    block : int
        Candidates examined per block (columns of ``K_MM`` computed at once).

    Returns
    -------
    piv : torch.LongTensor
        Indices of the ``r`` pivots, in pivot order.
    L : torch.Tensor
        ``(M, r)`` factor with ``K_MM ~= L L^T``; ``L[piv]`` is lower triangular.
    residual : float
        Largest residual diagonal left (the approximation error bound).
    """
    M = C.shape[0]
    max_rank = M if max_rank is None else min(int(max_rank), M)
    dev, dt = C.device, C.dtype
    # grown on demand: the rank is usually far below M, and zero-filling an
    # (M, M) matrix would cost more than the whole factorisation
    L = torch.empty(M, min(max_rank, 2 * block), dtype=dt, device=dev)
    diag = torch.ones(M, dtype=dt, device=dev)  # k(c, c) = 1 for the Gaussian kernel
    done = torch.zeros(M, dtype=torch.bool, device=dev)
    pivots: list[int] = []
    k = 0
    while k < max_rank:
        res = diag.masked_fill(done, -math.inf)
        b = min(block, max_rank - k, int((~done).sum()))
        if b <= 0:
            break
        # the b largest residuals, ties broken by the lower candidate index: topk's
        # order among equal values (all of them at the start, where every residual
        # is 1) differs between devices and torch builds, and so would the pivots
        vals, cand = torch.sort(res, descending=True, stable=True)
        vals, cand = vals[:b], cand[:b]
        if float(vals[0]) <= tol:
            break
        cand = cand[vals > tol]
        b = cand.numel()
        # Schur complement columns of the candidates: K(C, C_cand) - L L_cand^T.
        S = gaussian_kernel(C, C[cand], sigma)
        if k:
            S.addmm_(L[:, :k], L[cand, :k].T, alpha=-1.0)
        # greedy pivoting inside the small candidate block, then all M rows of the
        # accepted columns at once: Lnew G^T = S[:, acc]
        acc, G = _small_pivoted_cholesky(S[cand], tol, max_rank - k)
        j = len(acc)
        if j:
            acc_t = torch.tensor(acc, device=dev)
            Lnew = torch.linalg.solve_triangular(G, S[:, acc_t].T, upper=False).T
            # exact structure: the rows of earlier pivots are zero, the new pivots' rows
            # are the small factor itself (lower triangular in pivot order)
            if pivots:
                Lnew[torch.tensor(pivots, device=dev)] = 0.0
            Lnew[cand[acc_t]] = G
            pivots.extend(int(c) for c in cand[acc_t])
            if k + j > L.shape[1]:
                grown = torch.empty(M, min(max_rank, max(2 * L.shape[1], k + j)), dtype=dt,
                                    device=dev)
                grown[:, :k] = L[:, :k]
                L = grown
            L[:, k : k + j] = Lnew
            diag.sub_(Lnew.square().sum(1))
            k += j
        done[cand] = True
        if pivots:
            diag[torch.tensor(pivots, device=dev)] = 0.0
    remaining = diag.masked_fill(done, -math.inf)
    residual = max(float(remaining.max()) if remaining.numel() else 0.0, 0.0)
    piv = torch.tensor(pivots, dtype=torch.long, device=dev)
    return piv, L[:, :k].contiguous(), residual


def _small_pivoted_cholesky(
    S: torch.Tensor, tol: float, max_rank: int
) -> tuple[list[int], torch.Tensor]:
    """Greedy pivoted Cholesky of a small SPD block ``S`` (``b x b``).

    Returns the accepted pivot positions, in order, and the lower-triangular factor
    ``G`` with ``G G^T = S[acc][:, acc]``; stops when no residual exceeds ``tol``.
    """
    b = S.shape[0]
    G = torch.zeros(b, b, dtype=S.dtype, device=S.device)
    d = S.diagonal().clone()
    taken = torch.zeros(b, dtype=torch.bool, device=S.device)
    acc: list[int] = []
    for j in range(min(b, max_rank)):
        q = int(torch.argmax(d.masked_fill(taken, -math.inf)))
        dq = float(d[q])
        if dq <= tol:
            break
        col = S[:, q] - G[:, :j] @ G[q, :j]
        col.div_(math.sqrt(dq))
        G[:, j] = col
        d.sub_(col.square())
        taken[q] = True
        acc.append(q)
    acc_t = torch.tensor(acc, dtype=torch.long, device=S.device)
    Gacc = G[acc_t][:, : len(acc)]
    return acc, torch.tril(Gacc)


# ------------------------------------------------------------------- features


class _Features:
    """The Nyström feature map ``Phi = K(X, P) L_P^{-T}`` on the training set.

    Three storage modes, chosen by :meth:`KernelLogisticRegression.fit`:

    ``"phi"``
        ``Phi^T`` (``r x n``) held in memory. Every product is one contiguous GEMV
        or GEMM, and the exact Hessian ``Phi^T D Phi`` is formed from the very
        features that define ``f`` (used by the direct inner solver).
    ``"kernel"``
        ``K(P, X)`` (``r x n``) held in memory and ``L_P^{-1}`` applied to
        ``r``-vectors only: no ``n r^2`` work at all (used by PCG for large ``r``).
    ``"lazy"``
        Nothing of size ``n`` held: kernel blocks of at most ``block_bytes`` are
        recomputed for every product (when neither fits the memory budget).
    ``"window"``
        Narrow kernels (a :class:`_WindowPlan`): for each block of events sorted
        along one coordinate, the kernel columns of the ``W << r`` centres near it
        (``nb x block x W``); the other entries, all below :func:`negligible`, are
        zero. Products work with kernel coefficients and apply ``L_P^{-1}`` to
        ``r``-vectors only (``n W`` instead of ``n r``), as ``"kernel"`` does: for
        PCG. (A Hessian assembled as ``L_P^{-1} K_PX D K_XP L_P^{-T}`` would carry
        the rounding of ``cond(L_P)^2``, enough to make it indefinite at small
        ``lam``; :meth:`gram` computes dense columns instead.)
    """

    #: columns per chunk of the Hessian accumulation (keeps operands in cache)
    GRAM_CHUNK = 8192

    def __init__(
        self,
        X: torch.Tensor,
        P: torch.Tensor,
        L_P: torch.Tensor,
        sigma: float,
        mode: str,
        block_bytes: int,
        shift: torch.Tensor | None = None,
        plan: _WindowPlan | None = None,
        memory: FeatureMemory | None = None,
    ) -> None:
        # Translating events and centres by a common shift leaves the kernel
        # unchanged but keeps |x|^2 + |c|^2 - 2 x.c accurate for data far from 0.
        # ``X`` comes shifted already (in float64, before its cast: shifted_events);
        # the centres are shifted here
        if shift is not None:
            P = P - shift
        #: window mode holds the events sorted: every n-vector of this object (the
        #: arguments and results of its products) is in the order X[perm]
        self.perm = plan.perm if mode == "window" and plan is not None else None
        if self.perm is not None:
            X = X[self.perm]
        self.X, self.sigma, self.mode = X, sigma, mode
        self.n, self.r = X.shape[0], P.shape[0]
        self.dtype = X.dtype
        self.L_P = L_P  # float64
        self.P = P.to(self.dtype)
        # Explicit inverse of the small triangular factor: one GEMM per block is
        # several times faster than a triangular solve with n right-hand sides,
        # and the same matrix is used for every block, so features stay consistent.
        self.L_P_inv = _drop_negligible(torch.linalg.solve_triangular(
            L_P, torch.eye(self.r, dtype=L_P.dtype, device=L_P.device), upper=False
        ).to(self.dtype))
        #: the same inverse in float64, for the r-vector products (_to_alpha)
        self._L_P_inv64 = self.L_P_inv.to(torch.float64)
        item = X.element_size()
        # rows per block: the kernel block, its square-distance temporaries and Phi block
        self.rows = max(256, int(block_bytes // max(1, 3 * item * max(self.r, X.shape[1]))))
        self.block_bytes = block_bytes
        self.stored: torch.Tensor | None = None
        #: token of the stored matrix borrowed from ``memory`` (``None``: not borrowed);
        #: the fit gives it back with ``memory.release(token)`` when it is done
        self.borrow_token: int | None = None
        self.plan = plan
        if mode not in ("phi", "kernel", "window", "lazy"):
            raise ValueError(f"unknown feature mode {mode!r}")
        if memory is not None and mode in ("window", "lazy"):
            memory.discard()  # an idle block would only add to this fit's memory
        if mode == "window":
            if plan is None:
                raise ValueError("window features need a window plan")
            self.stored = self._window_kernel(plan)
        elif mode in ("phi", "kernel"):
            if memory is None:
                self.stored = torch.empty(self.r, self.n, dtype=self.dtype, device=X.device)
            else:
                self.stored, self.borrow_token = memory.matrix(self.r, self.n, self.dtype,
                                                               X.device)
            try:
                for sl in self._slices():
                    if mode == "phi":  # the product written in place: no block temporary
                        torch.matmul(self.L_P_inv, self._kT_block(sl),
                                     out=self.stored[:, sl])
                    else:
                        self.stored[:, sl] = self._kT_block(sl)
            except BaseException:
                if memory is not None:
                    memory.release(self.borrow_token)
                raise

    @property
    def materialised(self) -> bool:
        """Whether features of every event are held in memory."""
        return self.stored is not None

    # ---- window mode
    def _window_kernel(self, plan: _WindowPlan) -> torch.Tensor:
        """Kernel blocks ``(nb, block, W)`` of the sorted events against their windows."""
        nb, B, W = plan.n_blocks, plan.block, plan.width
        d = self.X.shape[1]
        Xs = self.X
        if nb * B > self.n:  # pad the last block with copies of the last event
            Xs = torch.cat([Xs, Xs[-1:].expand(nb * B - self.n, d)])
        Xs = Xs.view(nb, B, d)
        self._win = plan.lo[:, None] + torch.arange(W, device=self.X.device)  # sorted pos.
        Ps = self.P[plan.order]
        cap, s2 = _distance_cap(self.sigma, self.dtype), 2.0 * self.sigma * self.sigma
        V = torch.empty(nb, B, W, dtype=self.dtype, device=self.X.device)
        step = max(1, self.block_bytes // (3 * self.X.element_size() * B * W))
        for b0 in range(0, nb, step):
            xb, pb = Xs[b0 : b0 + step], Ps[self._win[b0 : b0 + step]]
            if d == 1:
                D = (xb - pb.transpose(1, 2)).square_()
            else:
                D = torch.baddbmm(xb.square().sum(2, keepdim=True) + pb.square().sum(2)[:, None],
                                  xb, pb.transpose(1, 2), alpha=-2.0)
            V[b0 : b0 + step] = D.clamp_(0.0, cap).mul_(-1.0 / s2).exp_()
        self._inv_order = torch.argsort(plan.order)
        return V

    def _to_blocks(self, u: torch.Tensor) -> torch.Tensor:
        """An ``n``-vector in the padded block layout ``(nb, block)``."""
        plan = self.plan
        pad = plan.n_blocks * plan.block - self.n
        return torch.nn.functional.pad(u.to(self.dtype), (0, pad)).view(plan.n_blocks,
                                                                           plan.block)

    def _from_blocks(self, fb: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_to_blocks` (float64, length ``n``)."""
        return fb.reshape(-1)[: self.n].to(torch.float64)

    def _window_mv(self, a: torch.Tensor) -> torch.Tensor:
        """``K_XP a`` in block layout for kernel coefficients ``a`` (storage dtype)."""
        A = a[self.plan.order][self._win]  # (nb, W)
        return torch.bmm(self.stored, A.unsqueeze(2)).squeeze(2)

    def _window_rmv(self, ub: torch.Tensor) -> torch.Tensor:
        """``K_PX u`` (``r``-vector of kernel sums) for ``u`` in block layout."""
        sb = torch.bmm(ub.unsqueeze(1), self.stored).squeeze(1)  # (nb, W)
        acc = torch.zeros(self.r, dtype=self.dtype, device=ub.device)
        acc.index_add_(0, self._win.reshape(-1), sb.reshape(-1))
        return acc[self._inv_order]

    def _slices(self):
        for start in range(0, self.n, self.rows):
            yield slice(start, min(start + self.rows, self.n))

    def _kT_block(self, sl: slice | torch.Tensor) -> torch.Tensor:
        """``K(P, X[sl])``, shape ``(r, len(sl))`` (``sl`` a slice or indices)."""
        return gaussian_kernel(self.P, self.X[sl], self.sigma)

    def _phiT_block(self, sl: slice | torch.Tensor) -> torch.Tensor:
        """``Phi[sl]^T = L_P^{-1} K(P, X[sl])``, shape ``(r, len(sl))``."""
        return self.L_P_inv @ self._kT_block(sl)

    def phiT_columns(self, sel: slice | torch.Tensor) -> torch.Tensor:
        """``Phi[sel]^T`` (``sel`` a slice or indices), shape ``(r, len(sel))``, from
        whatever is stored: the same features in every mode up to the last bits of
        the products (``"window"``: computed densely, with the kernel entries it drops
        at :func:`negligible`)."""
        if self.mode == "phi":
            return self.stored[:, sel]
        if self.mode == "kernel":
            return self.L_P_inv @ self.stored[:, sel]
        return self._phiT_block(sel)

    def _to_alpha(self, beta: torch.Tensor) -> torch.Tensor:
        """Kernel coefficients ``a = L_P^{-T} beta`` (in float64, then storage dtype).

        Through the explicit inverse that makes the features (``_phiT_block``, the
        Hessian, ``decision_function``), not a triangular solve: at small lambda
        ``L_P`` is ill-conditioned (1e9 at lambda = 1e-10), and the two routes then
        differ by far more than rounding (up to 0.3 in ``f``), so that the products of
        the kernel, lazy and window modes would belong to other features than their
        Hessian, and ``t`` would depend on the memory budget."""
        return (self._L_P_inv64.T @ beta.to(torch.float64)).to(self.dtype)

    def _from_kernel_sum(self, s: torch.Tensor) -> torch.Tensor:
        """``L_P^{-1} s`` for an ``r``-vector ``s`` of kernel sums (through the same
        explicit inverse as the features, see :meth:`_to_alpha`)."""
        return self._L_P_inv64 @ s.to(torch.float64)

    def mv(self, beta: torch.Tensor) -> torch.Tensor:
        """``Phi @ beta`` as a float64 vector of length ``n``."""
        if self.mode == "phi":
            return (beta.to(self.dtype) @ self.stored).to(torch.float64)
        a = self._to_alpha(beta)
        if self.mode == "window":
            return self._from_blocks(self._window_mv(a))
        if self.mode == "kernel":
            return (a @ self.stored).to(torch.float64)
        out = torch.empty(self.n, dtype=torch.float64, device=self.X.device)
        for sl in self._slices():
            out[sl] = a @ self._kT_block(sl)
        return out

    def rmv(self, u: torch.Tensor) -> torch.Tensor:
        """``Phi^T @ u`` as a float64 vector of length ``r``."""
        if self.mode == "phi":
            return (self.stored @ u.to(self.dtype)).to(torch.float64)
        if self.mode == "kernel":
            return self._from_kernel_sum(self.stored @ u.to(self.dtype))
        if self.mode == "window":
            return self._from_kernel_sum(self._window_rmv(self._to_blocks(u)))
        acc = torch.zeros(self.r, dtype=self.dtype, device=self.X.device)
        for sl in self._slices():
            acc.addmv_(self._kT_block(sl), u[sl].to(self.dtype))
        return self._from_kernel_sum(acc)

    def hvp(self, v: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """``Phi^T diag(d) Phi v`` (float64, length ``r``) in a single pass.

        Each block of ``Phi`` (or of the kernel) is used for both halves of the
        product while it is in cache, or computed once instead of twice (lazy mode).
        """
        dd = d.to(self.dtype)
        acc = torch.zeros(self.r, dtype=self.dtype, device=self.X.device)
        if self.mode == "phi":
            vv = v.to(self.dtype)
            for sl in self._chunks():
                A = self.stored[:, sl]
                acc.addmv_(A, (vv @ A).mul_(dd[sl]))
            return acc.to(torch.float64)
        a = self._to_alpha(v)
        if self.mode == "window":
            return self._from_kernel_sum(
                self._window_rmv(self._window_mv(a).mul_(self._to_blocks(d))))
        if self.mode == "kernel":
            for sl in self._chunks():
                A = self.stored[:, sl]
                acc.addmv_(A, (a @ A).mul_(dd[sl]))
        else:
            for sl in self._slices():
                A = self._kT_block(sl)
                acc.addmv_(A, (a @ A).mul_(dd[sl]))
        return self._from_kernel_sum(acc)

    def _chunks(self):
        """Column chunks of the stored matrix of about 4 MiB (cache-sized)."""
        step = self.n if self.X.device.type != "cpu" else max(
            1024, (4 << 20) // (self.r * self.stored.element_size()))
        for s in range(0, self.n, step):
            yield slice(s, min(s + step, self.n))

    def gram(self, d: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``Phi^T diag(d) Phi`` in float64, shape ``(r, r)``; with ``idx`` over those
        events only (``d`` then holds their weights), in blocks of ``rows`` events."""
        G = torch.zeros(self.r, self.r, dtype=self.dtype, device=self.X.device)
        dd = d.to(self.dtype)
        if idx is not None:
            for s in range(0, idx.shape[0], self.rows):
                A = self.phiT_columns(idx[s : s + self.rows])
                G.addmm_(A * dd[s : s + self.rows], A.T)
        elif self.mode == "phi":
            # cache-sized chunks on CPU; on a GPU chunks of ~256 MiB bound the temporary
            step = self.GRAM_CHUNK if self.X.device.type == "cpu" else max(
                self.GRAM_CHUNK, (256 << 20) // max(1, self.r * self.stored.element_size()))
            for s in range(0, self.n, step):
                A = self.stored[:, s : s + step]
                G.addmm_(A * dd[s : s + step], A.T)
        else:  # explicit feature blocks, consistent with the "phi" features
            for sl in self._slices():
                A = self.phiT_columns(sl)
                G.addmm_(A * dd[sl], A.T)
        G = G.to(torch.float64)
        return 0.5 * (G + G.T)


# ------------------------------------------------------------------- solver


@dataclass
class FitInfo:
    """Diagnostics of one fit (all plain Python types, JSON-serialisable).

    Attributes
    ----------
    converged : bool
        The convergence criterion was met (always ``True`` for a completed
        ``onestep`` schedule, which has no criterion).
    schedule : str
        ``"converged"`` or ``"onestep"``.
    inner : str
        Inner solver used: ``"direct"``, ``"cg"``, or ``"direct+cg"`` when a
        direct solve met a Hessian whose Cholesky factorisation failed (numerically
        indefinite, e.g. accumulated in float32) and took PCG for that step.
    n_iter : int
        Newton steps taken.
    n_cg : int
        Conjugate-gradient iterations summed over Newton steps (0 for direct).
    preconditioner : str
        PCG preconditioner used: ``"sample"`` (Hessian on a weight-proportional
        subsample; converged schedule), ``"centres"`` (Falkon's estimate on the
        candidate centres; the one-step schedule, and the converged one when the
        affordable subsample is not larger than ``M``), or ``"none"`` (no CG
        iteration ran).
    n_hessian : int
        Hessians formed and factorised by the direct inner solve (a Hessian is
        reused across steps while the curvature has changed little, see
        :data:`HESSIAN_REUSE_FACTOR`; 0 with PCG).
    grad_norm : float
        Euclidean norm of the gradient of ``J`` in the orthonormal (beta) basis
        at the returned solution.
    suboptimality : float
        ``n * decrement^2 / 2`` at the last Newton step: an estimate of
        ``n (J - J*)``, the distance to the optimum of the summed loss.
    objective : float
        Final value of ``J`` (mean loss + penalty).
    n_centers : int
        Candidate centres ``M``.
    rank : int
        Pivot centres kept (the dimension of the solved problem).
    rank_tol : float
        Pivoted-Cholesky tolerance used.
    rank_residual : float
        Largest residual diagonal left by the pivoted Cholesky.
    materialised : bool
        Whether features of every event were held in memory.
    features : str
        Feature storage: ``"phi"``, ``"kernel"``, ``"lazy"`` or ``"window"`` (see
        :class:`_Features`).
    time_setup, time_solve, time_total : float
        Seconds spent on centres/Cholesky/features, on Newton, and in total.
    warm_start : bool
        Whether Newton started from another width's solution (``init_decision``).
    message : str
        Why the solver stopped.
    """

    converged: bool = False
    schedule: str = "converged"
    inner: str = "direct"
    n_iter: int = 0
    n_cg: int = 0
    preconditioner: str = "none"
    n_hessian: int = 0
    grad_norm: float = float("nan")
    suboptimality: float = float("nan")
    objective: float = float("nan")
    n_centers: int = 0
    rank: int = 0
    rank_tol: float = 0.0
    rank_residual: float = 0.0
    materialised: bool = True
    features: str = "phi"
    time_setup: float = 0.0
    time_solve: float = 0.0
    time_total: float = 0.0
    warm_start: bool = False
    message: str = ""
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)


class _Loss:
    """Weighted logistic loss ``sum_i s_i softplus(-(2 y_i - 1) f_i)`` and its derivatives.

    Precomputes the sign and weight products so each evaluation is a single
    transcendental pass over the ``n`` events.
    """

    def __init__(self, sign: torch.Tensor, sw: torch.Tensor) -> None:
        self.sw = sw
        self.nsign = -sign
        self.mssw = -(sign * sw)

    def value(self, f: torch.Tensor) -> float:
        """Summed loss."""
        return float(torch.dot(self.sw, F.softplus(f * self.nsign)))

    def derivatives(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First and second derivative of each event's loss in ``f``."""
        s_neg = torch.sigmoid(f * self.nsign)
        d1 = s_neg * self.mssw
        d2 = s_neg.mul(1.0 - s_neg).mul_(self.sw)
        return d1, d2


def _pcg(
    matvec, b: torch.Tensor, precond, rtol: float, maxiter: int
) -> tuple[torch.Tensor, int, float]:
    """Preconditioned conjugate gradient for SPD systems (float64 vectors).

    Returns the solution, the iterations taken and the relative residual
    ``|b - A x| / |b|`` reached (above ``rtol`` when stopped by ``maxiter`` or by
    lost curvature at the rounding floor).
    """
    x = torch.zeros_like(b)
    r = b.clone()
    bnorm = float(torch.linalg.vector_norm(b))
    if bnorm == 0.0:
        return x, 0, 0.0
    z = precond(r)
    p = z.clone()
    rz = float(r @ z)
    k = 0
    while True:
        rel = float(torch.linalg.vector_norm(r)) / bnorm
        if rel <= rtol or k >= maxiter:
            return x, k, rel
        Ap = matvec(p)
        pAp = float(p @ Ap)
        if pAp <= 0.0:  # lost positive curvature to rounding: stop with what we have
            return x, k, rel
        alpha = rz / pAp
        x.add_(p, alpha=alpha)
        r.sub_(Ap, alpha=alpha)
        z = precond(r)
        rz_new = float(r @ z)
        p.mul_(rz_new / rz).add_(z)
        rz = rz_new
        k += 1


def weighted_subsample(sw: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic subsample of about ``size`` events, drawn with probability
    proportional to the weights ``sw``.

    Inclusion probabilities ``pi_i = min(1, c sw_i)`` with ``c`` set so that they sum
    to ``size`` exactly (events whose weight alone would exceed 1 are always taken);
    events are then taken by systematic sampling with a fixed offset of one half
    along the cumulative ``pi``, so the subsample depends on the data only, never on
    a random state. For events in random order ``sum_{i in S} a_i / pi_i``
    estimates ``sum_i a_i`` approximately without bias (a fixed offset is not
    exactly unbiased: ample for a preconditioner); for events sorted along a
    coordinate (``"window"`` features) the sample is stratified along it.

    Parameters
    ----------
    sw : torch.Tensor
        Non-negative event weights, shape ``(n,)``.
    size : int
        Expected number of events taken.

    Returns
    -------
    idx : torch.Tensor
        Indices of the events taken (increasing).
    pi : torch.Tensor
        Their inclusion probabilities (float64).
    """
    w = sw.to(torch.float64)
    pos = w > 0
    n_pos = int(pos.sum())
    if size <= 0:
        return (torch.zeros(0, dtype=torch.long, device=w.device),
                torch.zeros(0, dtype=torch.float64, device=w.device))
    if size >= n_pos:
        idx = torch.nonzero(pos).squeeze(1)
        return idx, torch.ones(idx.shape[0], dtype=torch.float64, device=w.device)
    # c: with the k largest weights capped at pi = 1, c_k = (size - k) / (sum of the
    # others); the answer is the smallest k whose (k+1)-th largest weight stays
    # below 1 / c_k (k < size always qualifies, as the others sum to more than it)
    ws = torch.sort(w[pos], descending=True).values
    rest = torch.flip(torch.cumsum(torch.flip(ws, (0,)), 0), (0,))[:size]
    k = torch.arange(size, dtype=torch.float64, device=w.device)
    ck = (size - k) / rest
    first = int(torch.nonzero(ck * ws[:size] < 1.0)[0])
    pi = torch.clamp(float(ck[first]) * w, max=1.0)
    cum = torch.cumsum(pi, 0)
    prev = torch.cat([cum.new_zeros(1), cum[:-1]])
    take = (torch.floor(cum + 0.5) > torch.floor(prev + 0.5)) & pos
    idx = torch.nonzero(take).squeeze(1)
    return idx, pi[idx]


def _chol_with_jitter(A: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of an SPD matrix, adding diagonal jitter only if needed.

    Used for preconditioners only: the jitter changes convergence speed, not the
    problem being solved.
    """
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L
    scale = float(A.diagonal().abs().max()) or 1.0
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    for e in (1e-14, 1e-12, 1e-10, 1e-8, 1e-6):
        L, info = torch.linalg.cholesky_ex(A + (e * scale) * eye)
        if int(info) == 0:
            return L
    raise RuntimeError("preconditioner is not positive definite even with jitter")


class _NewtonSolver:
    """Newton iterations in the orthonormal (beta) basis."""

    def __init__(
        self,
        feat: _Features,
        sign: torch.Tensor,
        sw: torch.Tensor,
        lam: float,
        L_M: torch.Tensor,
        center_idx: torch.Tensor,
        inner: str,
        cg_tol: float,
        cg_max_iter: int,
        precond: str = "centres",
    ) -> None:
        if precond not in PRECONDITIONERS:
            raise ValueError(f"unknown preconditioner {precond!r}")
        self.feat, self.sw, self.lam = feat, sw, lam
        self.n = feat.n
        self.L_M = L_M
        # a subsample no larger than the M centres would cost more than their
        # estimate (whose features L_M come free with the pivoted Cholesky)
        if precond == "sample" and self.precond_sample_size() <= L_M.shape[0]:
            precond = "centres"
        self.precond = precond
        self._sample: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loss = _Loss(sign, sw)
        self.center_idx = center_idx
        self.inner, self.cg_tol, self.cg_max_iter = inner, cg_tol, cg_max_iter
        self._precond: torch.Tensor | None = None
        self._fresh_cg = -1
        self._last_cg = 0
        self._hess_factor: torch.Tensor | None = None  # direct: Cholesky factor in use
        self._hess_d2: torch.Tensor | None = None  # the curvature it was built with
        self.n_hessian = 0

    def objective(self, f: torch.Tensor, beta: torch.Tensor) -> float:
        return self.loss.value(f) / self.n + 0.5 * self.lam * float(beta @ beta)

    def _curvature_bound(self, d2: torch.Tensor) -> float:
        """``c`` with ``H(d2) >= c H_used`` for the factorised Hessian in use.

        ``c = min(1, min_i d2_i / d2_used_i)``: the Hessians share ``Phi`` and
        ``lam``, so the true Newton decrement is at most the one computed with the
        reused Hessian divided by ``c``; ``c = 0`` asks for a fresh Hessian.
        """
        if self._hess_d2 is None:
            return 0.0
        old = self._hess_d2
        ratio = torch.where(old > 0, d2 / torch.where(old > 0, old, 1.0), math.inf)
        lo = float(ratio.min())
        hi = float(torch.where(old > 0, ratio, 0.0).max())
        if not (lo * HESSIAN_REUSE_FACTOR >= 1.0 and hi <= HESSIAN_REUSE_FACTOR):
            return 0.0
        return min(1.0, lo)

    def direction(
        self, g: torch.Tensor, d2: torch.Tensor, cg_tol: float, reuse: bool = False
    ) -> tuple[torch.Tensor, int, float]:
        """Newton direction: ``(delta, cg_iterations, relative_residual)``.

        With ``reuse`` the direct solve takes the Hessian factor of an earlier step
        (a chord step; the caller bounds its decrement with
        :meth:`_curvature_bound`).
        """
        r = g.shape[0]
        eye = torch.eye(r, dtype=torch.float64, device=g.device)
        if self.inner == "direct":
            if not (reuse and self._hess_factor is not None):
                H = self.feat.gram(d2) / self.n + self.lam * eye
                Lh, info = torch.linalg.cholesky_ex(H)
                self.n_hessian += 1
                if int(info) != 0:  # numerically indefinite: fall back to PCG below
                    log.debug("Hessian Cholesky failed (info=%d), using PCG", int(info))
                    self._hess_factor = self._hess_d2 = None
                else:
                    self._hess_factor, self._hess_d2 = Lh, d2
            if self._hess_factor is not None:
                return (-torch.cholesky_solve(g.unsqueeze(1), self._hess_factor).squeeze(1),
                        0, 0.0)
        # The preconditioner (the Hessian estimated on a subsample) costs about
        # (sample size) r^2, so it is built once and reused while PCG keeps
        # converging about as fast as with a fresh one; the CG solve is exact
        # whatever preconditioner it uses.
        if self._precond is None or self._last_cg > 2 * max(self._fresh_cg, 10):
            self._precond = self._build_preconditioner(d2)
            self._fresh_cg = -1

        def matvec(v: torch.Tensor) -> torch.Tensor:
            return self.feat.hvp(v, d2) / self.n + self.lam * v

        Pinv = self._precond
        delta, k, rel = _pcg(matvec, -g, lambda v: Pinv @ v, cg_tol, self.cg_max_iter)
        self._last_cg = k
        if self._fresh_cg < 0:
            self._fresh_cg = k
        return delta, k, rel

    def precond_sample_size(self) -> int:
        """Events in the weighted subsample of the ``"sample"`` preconditioner."""
        M, r = self.L_M.shape[0], self.feat.r
        cap = PRECOND_COST_FACTOR * self.n // max(r, 1)
        return min(self.n, PRECOND_SAMPLE_FACTOR * r, 4 * M, cap)

    def _build_preconditioner(self, d2: torch.Tensor) -> torch.Tensor:
        """Inverse (dense, float64) of the Hessian estimated on a subsample.

        ``"centres"`` (Falkon): ``(1/M) L_M^T diag(d2_M) L_M + lam I`` on the ``M``
        candidate centres. ``"sample"``: ``(1/n) sum_{i in S} (d2_i / pi_i) phi_i
        phi_i^T + lam I`` on a weight-proportional subsample ``S``
        (:func:`weighted_subsample`), accumulated in blocks.
        """
        Lm = self.L_M
        r = Lm.shape[1]
        if r == 0:
            return torch.eye(0, dtype=torch.float64, device=Lm.device)
        if self.precond == "centres":
            Pm = Lm.T @ (Lm * d2[self.center_idx][:, None])
            Pm.div_(Lm.shape[0])
        else:
            if self._sample is None:
                self._sample = weighted_subsample(self.sw, self.precond_sample_size())
            idx, pi = self._sample
            Pm = self.feat.gram(d2[idx] / pi, idx).div_(self.n)
        Pm.diagonal().add_(self.lam)
        Lp = _chol_with_jitter(0.5 * (Pm + Pm.T))
        return torch.cholesky_inverse(Lp)

    def objective_at_zero(self) -> float:
        """``J`` at ``beta = 0`` (``f = 0``, where every event's loss is ``log 2``)."""
        return math.log(2.0) * float(self.sw.sum()) / self.n

    def warm_start(
        self, f0: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, float] | None, int]:
        """A starting point from decision values ``f0`` of another model.

        ``f0`` (e.g. the fit at a neighbouring kernel width) is usually not in this
        model's span; the start is the minimiser of the quadratic model of the
        objective around ``f0`` (one iteratively-reweighted least-squares step):
        ``(Phi^T D Phi / n + lam) beta = Phi^T (D f0 - g) / n`` with the loss
        derivatives ``g``, ``D`` at ``f0``, solved loosely by PCG. Returns ``((beta,
        f, J), cg_iterations)`` at the start, or ``(None, k)`` when the start is not
        better than zero.
        """
        n = self.n
        d1, d2 = self.loss.derivatives(f0)
        rhs = self.feat.rmv(d2 * f0 - d1) / n
        self._precond = self._build_preconditioner(d2)
        self._fresh_cg = -1
        Pinv = self._precond
        beta, k, _ = _pcg(lambda v: self.feat.hvp(v, d2) / n + self.lam * v, rhs,
                          lambda v: Pinv @ v, WARM_START_CG_TOL, self.cg_max_iter)
        f = self.feat.mv(beta)
        J = self.objective(f, beta)
        if math.isfinite(J) and J < self.objective_at_zero():
            return (beta, f, J), k
        self._precond = None  # start from zero exactly as without a warm start
        return None, k

    def solve(
        self, schedule: str, tol: float, max_iter: int, beta0: torch.Tensor | None,
        f0: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, FitInfo]:
        info = FitInfo(schedule=schedule, inner=self.inner)
        r = self.feat.r
        start = None
        if f0 is not None and beta0 is None and schedule != "onestep" and self.inner == "cg":
            start, k0 = self.warm_start(f0)
            info.n_cg += k0
            info.warm_start = start is not None
        if start is not None:
            beta, f, J = start
        elif beta0 is None:
            beta = torch.zeros(r, dtype=torch.float64, device=self.sw.device)
            f = torch.zeros_like(self.sw)
            J = self.objective_at_zero()
        else:
            beta = beta0.clone()
            f = self.feat.mv(beta)
            J = self.objective(f, beta)
        n = self.n
        steps = 1 if schedule == "onestep" else max_iter
        g0_norm = math.nan
        for it in range(steps):
            d1, d2 = self.loss.derivatives(f)
            g = self.feat.rmv(d1) / n + self.lam * beta
            g_norm = float(torch.linalg.vector_norm(g))
            if it == 0:
                g0_norm = g_norm
            # Inexact Newton: loose PCG solves far from the optimum, tight near it
            # (forcing term ||g_k|| / ||g_0||), which keeps the convergence superlinear.
            # The one-step schedule always uses its fixed published tolerance.
            cg_tol = self.cg_tol if schedule == "onestep" else max(
                self.cg_tol, min(0.1, g_norm / g0_norm if g0_norm > 0 else 0.0))
            # Direct solve: reuse the last Hessian factor while the curvature is
            # within HESSIAN_REUSE_FACTOR of it (never for the one-step schedule).
            c = 0.0 if (schedule == "onestep" or self.inner != "direct" or it == 0) \
                else self._curvature_bound(d2)
            delta, ncg, cg_res = self.direction(g, d2, cg_tol, reuse=c > 0)
            # The decrement estimate -g.delta is trustworthy (to ~10%) once the inner
            # solve's residual is below 0.1; a badly truncated solve (CG iteration cap)
            # would underestimate it and must not be taken for convergence.
            cg_ok = cg_res <= CG_TRUST_RESIDUAL
            info.n_cg += ncg
            dec2 = float(-(g @ delta))
            # with a reused Hessian H_used <= H / c: dec2 / c bounds the true decrement
            info.suboptimality = 0.5 * n * dec2 / (c if c > 0 else 1.0)
            info.grad_norm = g_norm
            info.history.append(
                {"objective": J, "grad_norm": info.grad_norm, "suboptimality": info.suboptimality,
                 "n_cg": ncg}
            )
            log.debug("newton %d: J=%.12g |g|=%.3e n*dec^2/2=%.3e cg=%d", it, J, info.grad_norm,
                      info.suboptimality, ncg)
            fdelta = self.feat.mv(delta)
            if schedule == "onestep":
                beta = beta + delta
                f = f + fdelta
                J = self.objective(f, beta)
                info.n_iter = 1
                info.converged = True
                info.message = "one Newton step taken (published schedule)"
                break
            if dec2 < 0:
                info.message = "Newton direction is not a descent direction (rounding)"
                break
            # Stagnation: no 4x improvement of the estimate over the last three steps
            # means rounding noise dominates the gradient (the floating-point floor).
            hist = info.history
            stalled = (len(hist) >= 4 and cg_ok and info.suboptimality <= 1e3 * tol
                       and info.suboptimality > 0.25 * hist[-4]["suboptimality"])
            if stalled:
                info.n_iter = it
                info.converged = True
                info.message = ("converged to the floating-point floor: estimated "
                                f"n*(J - J*) = {info.suboptimality:.3g} stopped decreasing "
                                "(within 1000 x tol)")
                break
            if info.suboptimality <= tol and cg_ok:
                # converged: take the (tiny) step anyway if it does not increase J
                beta_new, f_new = beta + delta, f + fdelta
                J_new = self.objective(f_new, beta_new)
                if J_new <= J:
                    beta, f, J = beta_new, f_new, J_new
                    info.n_iter = it + 1
                else:
                    info.n_iter = it
                info.converged = True
                info.message = "converged: estimated n*(J - J*) <= tol"
                break
            # backtracking line search (Armijo)
            slope = float(g @ delta)
            step = 1.0
            accepted = False
            while step >= 1e-10:
                beta_new = beta + step * delta
                f_new = f + step * fdelta
                J_new = self.objective(f_new, beta_new)
                if J_new <= J + 1e-4 * step * slope:
                    accepted = True
                    break
                step *= 0.5
            info.n_iter = it + 1
            if not accepted:
                # No decrease is measurable any more: the floor of floating-point
                # precision. Accepted as converged only within 1000 x tol.
                info.converged = cg_ok and info.suboptimality <= 1e3 * tol
                info.message = (
                    "stopped at the floating-point floor (no measurable decrease); "
                    f"estimated n*(J - J*) = {info.suboptimality:.3g}"
                    + ("" if info.converged else " is above 1000 x tol: NOT converged")
                )
                break
            beta, f, J = beta_new, f_new, J_new
        else:
            if schedule != "onestep":
                info.message = f"maximum number of Newton steps ({max_iter}) reached"
        if schedule == "onestep" and not cg_ok:
            info.converged = False
            info.message = ("one Newton step taken, but PCG stopped at its iteration cap "
                            f"with relative residual {cg_res:.2g}")
        if not info.converged and not info.message:
            info.message = "not converged"
        # final gradient at the returned point
        d1, _ = self.loss.derivatives(f)
        g = self.feat.rmv(d1) / n + self.lam * beta
        info.grad_norm = float(torch.linalg.vector_norm(g))
        info.objective = J
        info.n_hessian = self.n_hessian
        if self.inner == "direct" and info.n_cg > 0:  # PCG stood in for a failed Cholesky
            info.inner = "direct+cg"
        return beta, f, info


# ------------------------------------------------------------------- basis


def check_center_memory(M: int, device: torch.device) -> None:
    """Refuse, with a clear message, a number of centres whose factor cannot fit."""
    need = 8 * M * M  # worst case of the (M, r) float64 centre factor, r = M
    available = device_memory_bytes(device)
    if need > 0.8 * available:
        raise InputError(
            f"n_centers={M} needs up to {need / 1024**3:.1f} GiB for the centre factor "
            f"but the {device.type} device has {available / 1024**3:.1f} GiB; "
            "use fewer centres"
        )


def shifted_events(X: np.ndarray, shift: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Events translated by the centres' mean ``shift`` in float64, then cast to
    ``dtype`` (in float32 a cast first would round events far from 0 before the
    shift), on the device of ``shift``."""
    return (torch.as_tensor(X, dtype=torch.float64, device=shift.device) - shift).to(dtype)


@dataclass
class NystromBasis:
    """The pivot centres of a Nyström model and their Cholesky factors.

    Built once by :meth:`build` from ``M`` candidate centres; a fit only needs the
    basis and the training labels/weights, so a basis (and the features of a fixed
    event pool computed from it) can be shared by many fits, e.g. the toys of one
    calibration with ``centers="shared"``.

    Attributes
    ----------
    sigma : float
        Kernel width.
    P : torch.Tensor
        The ``r`` pivot centres, ``(r, d)``, float64.
    L_P : torch.Tensor
        Lower-triangular ``(r, r)`` factor with ``K(P, P) = L_P L_P^T``.
    L : torch.Tensor
        ``(M, r)`` factor on all candidates, ``K_MM ~= L L^T`` (preconditioner).
    candidate_idx : numpy.ndarray
        Row indices of the ``M`` candidates in the training set they were drawn from.
    pivots : numpy.ndarray
        Positions of the pivots among the candidates.
    rank_tol, residual : float
        Pivoted-Cholesky tolerance and the largest residual left.
    """

    sigma: float
    P: torch.Tensor
    L_P: torch.Tensor
    L: torch.Tensor
    candidate_idx: np.ndarray
    pivots: np.ndarray
    rank_tol: float
    residual: float
    shift: torch.Tensor

    @property
    def rank(self) -> int:
        """Number of pivot centres ``r``."""
        return int(self.P.shape[0])

    @property
    def n_candidates(self) -> int:
        """Number of candidate centres ``M``."""
        return int(self.L.shape[0])

    @classmethod
    def build(
        cls, X: np.ndarray, candidate_idx: np.ndarray, sigma: float, rank_tol: float,
        device: torch.device,
    ) -> NystromBasis:
        """Pivoted Cholesky of the candidates ``X[candidate_idx]`` (float64 on ``device``)."""
        C64 = torch.as_tensor(X[candidate_idx], dtype=torch.float64, device=device)
        shift = C64.mean(0)
        piv, L, residual = pivoted_cholesky(C64 - shift, sigma, rank_tol)
        return cls(sigma=float(sigma), P=C64[piv], L_P=L[piv], L=L,
                   candidate_idx=np.asarray(candidate_idx), pivots=piv.cpu().numpy(),
                   rank_tol=float(rank_tol), residual=residual, shift=shift)

    def events(self, X: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """Events as :meth:`features` takes them (:func:`shifted_events`).

        Parameters
        ----------
        X : numpy.ndarray, shape (n, d)
            Events.
        dtype : torch.dtype
            The features' dtype.

        Returns
        -------
        torch.Tensor, shape (n, d)
            On the basis' device.
        """
        return shifted_events(X, self.shift, dtype)

    def features(self, X: torch.Tensor, mode: str, block_bytes: int,
                 window_budget: int | None = None,
                 memory: FeatureMemory | None = None) -> _Features:
        """Feature map of the events ``X`` (:meth:`events`: on the device, shifted,
        in the data dtype).

        With ``window_budget`` (bytes) the ``"window"`` storage replaces ``mode``
        where the kernel is narrow enough (:func:`_window_plan`) and it fits. With
        ``memory`` stored ``"phi"``/``"kernel"`` features may be borrowed from it
        (``memory.release(features.borrow_token)`` when they are no longer used).
        """
        plan = None
        if window_budget is not None:
            plan = _window_plan(X, (self.P - self.shift).to(X.dtype), self.sigma)
            if plan is not None and (plan.n_blocks * plan.block * plan.width
                                     * X.element_size() > window_budget):
                plan = None
        return _Features(X, self.P, self.L_P, self.sigma, "window" if plan else mode,
                         block_bytes, self.shift, plan, memory)


# ------------------------------------------------------------------- estimator


def _as_generator(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):  # scikit-learn's convention
        return np.random.default_rng(int(random_state.randint(2**31 - 1)))
    raise InputError(
        f"random_state must be None, an int, a numpy Generator, SeedSequence or "
        f"RandomState, "
        f"not {type(random_state).__name__}"
    )


def _check_labels_and_weights(y: Any, sample_weight: Any, n: int
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Labels in {0, 1} of shape ``(n,)`` and finite, non-negative weights with a
    positive sum (ones when ``sample_weight`` is None)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise InputError(f"y must have shape ({n},), got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise InputError("y must contain only the labels 0 and 1")
    if sample_weight is None:
        return y, np.ones(n)
    sw = np.asarray(sample_weight, dtype=np.float64)
    if sw.shape != (n,):
        raise InputError(f"sample_weight must have shape ({n},), got {sw.shape}")
    if not np.isfinite(sw).all():
        raise InputError("sample_weight contains non-finite values")
    if (sw < 0).any():
        raise InputError("sample_weight contains negative values")
    if sw.sum() <= 0:
        raise InputError("sample_weight sums to zero")
    return y, sw


def _check_2d(X: Any, name: str) -> np.ndarray:
    arr = np.asarray(X)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D array (events x features), got {arr.ndim}-D shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty (0 events)")
    if arr.shape[1] == 0:
        raise InputError(f"{name} has no features (0 columns)")
    if np.iscomplexobj(arr):
        raise InputError(f"{name} must be real-valued")
    # a read-only view (e.g. of a pandas frame) would make torch warn when wrapping it
    arr = arr.astype(np.float64, copy=not arr.flags.writeable)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            f"{name} contains a non-finite value ({arr[row, col]}) at row {row}, column {col}"
        )
    return arr


def _check_init_decision(init_decision: Any, n: int) -> np.ndarray | None:
    if init_decision is None:
        return None
    f0 = np.asarray(init_decision, dtype=np.float64)
    if f0.shape != (n,):
        raise InputError(f"init_decision must have shape ({n},), got {f0.shape}")
    if not np.isfinite(f0).all():
        raise InputError("init_decision contains non-finite values")
    return f0


class KernelLogisticRegression(EstimatorProtocol):
    """Weighted Nyström kernel logistic regression (Gaussian kernel).

    A scikit-learn style estimator: ``__init__`` stores parameters, :meth:`fit`
    returns ``self``, fitted attributes end in ``_``. ``get_params``/``set_params``
    make it usable with ``sklearn.base.clone`` and grid searches.

    Parameters
    ----------
    sigma : float or "auto"
        Kernel width, in the units of ``X`` as given (this learner does not
        standardise; ``nplm_test``'s ``sigma`` is in standardised units). ``"auto"``:
        the 90th percentile of pairwise distances of the class-0 (reference) training
        events.
    n_centers : int, optional
        Candidate Nyström centres ``M`` drawn uniformly without replacement from
        the training set. Default :func:`default_n_centers`.
    lam : float
        Penalty ``lam`` of ``(lam/2) a^T K_MM a`` on the mean weighted loss.
    schedule : {"converged", "onestep"}
        ``"converged"`` (default): damped Newton to the optimum. ``"onestep"``:
        one undamped Newton step from zero with PCG tolerance ``sqrt(1e-7)``, the
        schedule of the published kernel NPLM; early-stopped, so defined by the
        procedure rather than the optimum.
    tol : float
        Converged schedule: stop when the estimated ``n (J - J*)`` (the
        suboptimality of the summed loss) is below ``tol``.
    max_iter : int
        Maximum Newton steps.
    inner : {"auto", "direct", "cg"}
        Inner linear solver: exact Cholesky of the ``r x r`` Hessian, or PCG
        preconditioned by the Hessian estimated on a weighted subsample of the
        events (Falkon's estimate on the centres for the one-step schedule; see
        :data:`PRECOND_SAMPLE_FACTOR`). ``"auto"``: direct up to rank 512.
    cg_tol : float, optional
        Relative residual tolerance of PCG (default ``1e-8``; ``sqrt(1e-7)`` for
        the onestep schedule).
    cg_max_iter : int
        Maximum PCG iterations per Newton step.
    rank_tol : float, optional
        Pivoted-Cholesky tolerance (see :func:`default_rank_tol`); ``0`` keeps every
        centre independent to float64 round-off (floored at ``1e-15``).
    dtype : {"float64", "float32"}
        Precision of the ``n x r`` kernel work (the ``r x r`` algebra is float64).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    memory_budget : int, optional
        Bytes allowed for the cached feature matrix (default: a quarter of RAM up
        to 8 GiB on CPU, half the free memory on a GPU).
    block_bytes : int
        Size of the kernel blocks computed on the fly.
    random_state : int, numpy Generator, SeedSequence or RandomState, optional
        Source of the centre draw.
    """

    def __init__(
        self,
        sigma: float | str = "auto",
        n_centers: int | None = None,
        lam: float = 1e-6,
        *,
        schedule: str = "converged",
        tol: float = 1e-8,
        max_iter: int = 100,
        inner: str = "auto",
        cg_tol: float | None = None,
        cg_max_iter: int = 1000,
        rank_tol: float | None = None,
        dtype: str = "float64",
        device: str = "cpu",
        memory_budget: int | None = None,
        block_bytes: int = 64 * 1024**2,
        random_state: Any = None,
    ) -> None:
        self.sigma = sigma
        self.n_centers = n_centers
        self.lam = lam
        self.schedule = schedule
        self.tol = tol
        self.max_iter = max_iter
        self.inner = inner
        self.cg_tol = cg_tol
        self.cg_max_iter = cg_max_iter
        self.rank_tol = rank_tol
        self.dtype = dtype
        self.device = device
        self.memory_budget = memory_budget
        self.block_bytes = block_bytes
        self.random_state = random_state

    # -- scikit-learn protocol -------------------------------------------------
    _PARAM_NAMES = (
        "sigma", "n_centers", "lam", "schedule", "tol", "max_iter", "inner", "cg_tol",
        "cg_max_iter", "rank_tol", "dtype", "device", "memory_budget", "block_bytes",
        "random_state",
    )

    _FITTED_ATTR = "_beta"

    # -- validation ---------------------------------------------------------------
    def _validate_params(self) -> None:
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.inner not in INNER_SOLVERS:
            raise InputError(f"inner must be one of {INNER_SOLVERS}, got {self.inner!r}")
        if not (is_real(self.lam) and math.isfinite(self.lam) and self.lam > 0):
            raise InputError(f"lam must be a positive finite number, got {self.lam!r}")
        if isinstance(self.sigma, str):
            if self.sigma != "auto":
                raise InputError(f"sigma must be a positive number or 'auto', got {self.sigma!r}")
        elif not (is_real(self.sigma) and math.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(f"sigma must be a positive finite number or 'auto', got "
                             f"{self.sigma!r}")
        elif not 1e-100 <= float(self.sigma) <= 1e100:
            raise InputError(f"sigma = {self.sigma!r} is outside [1e-100, 1e100]: the "
                             "Gaussian kernel under- or overflows")
        if self.n_centers is not None and not (
                is_real(self.n_centers) and float(self.n_centers).is_integer()
                and self.n_centers >= 1):
            raise InputError(f"n_centers must be an integer >= 1 or None, got "
                             f"{self.n_centers!r}")
        for name in ("max_iter", "cg_max_iter", "block_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("tol", "cg_tol"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)
                                      and v > 0):
                raise InputError(f"{name} must be a positive finite number, got {v!r}")
        rt = self.rank_tol
        if rt is not None and not (isinstance(rt, (int, float)) and 0 <= rt < 1):
            raise InputError(f"rank_tol must be a number in [0, 1), got {rt!r}")
        if (rt is not None and rt < RANK_TOL_FLOOR_FLOAT32
                and resolve_dtype(self.dtype) == torch.float32):
            # float32 kernel entries carry relative errors of ~1e-7, amplified by up to
            # 1/sqrt(rank_tol) in the features: below this floor the features are noise
            # and the fit reports a converged optimum of the wrong problem
            raise InputError(
                f"rank_tol = {rt!r} is below the float32 floor {RANK_TOL_FLOOR_FLOAT32:g}: "
                "the features would be dominated by rounding errors; use dtype='float64' "
                "for a smaller tolerance, or leave rank_tol at its default")
        if self.memory_budget is not None and not (
                isinstance(self.memory_budget, (int, np.integer)) and self.memory_budget >= 0):
            raise InputError(f"memory_budget must be a non-negative integer (bytes), got "
                             f"{self.memory_budget!r}")

    # -- fitting ------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        init_decision: Any = None,
    ) -> KernelLogisticRegression:
        """Fit the classifier.

        Parameters
        ----------
        X : array-like, shape (n, d)
            Training events.
        y : array-like, shape (n,)
            Labels in {0, 1} (NPLM: 0 = reference, 1 = data).
        sample_weight : array-like, shape (n,), optional
            Non-negative per-event weights multiplying the loss (NPLM: the
            reference weights ``w_i``, 1 for data events).
        init_decision : array-like, shape (n,), optional
            Decision values on ``X`` of another fit (e.g. at a neighbouring kernel
            width) to start Newton from. Used by PCG fits of the converged schedule
            only (see :meth:`_NewtonSolver.warm_start`); the direct solver and the
            one-step schedule ignore it. The optimum does not depend on the start:
            the fit changes within the convergence tolerance.

        Returns
        -------
        self
        """
        t0 = time.perf_counter()
        self._validate_params()
        X = _check_2d(X, "X")
        n = X.shape[0]
        y, sw = _check_labels_and_weights(y, sample_weight, n)
        device = self._settings()[0]
        rng = _as_generator(self.random_state)
        sigma = self._resolve_sigma(X, y, rng, sw)
        M = default_n_centers(n) if self.n_centers is None else min(int(self.n_centers), n)
        check_center_memory(M, device)
        center_idx = np.sort(rng.choice(n, size=M, replace=False))
        basis = NystromBasis.build(X, center_idx, sigma, self.resolved_rank_tol(), device)
        return self._fit_basis(X, y, sw, basis, t0=t0,
                               init_decision=_check_init_decision(init_decision, n))

    def resolved_rank_tol(self) -> float:
        """The pivoted-Cholesky tolerance this estimator uses.

        An explicit ``rank_tol`` is floored at ``RANK_TOL_FLOOR`` (float64 round-off
        of the residual diagonal): pivots below it would be rounding noise.
        """
        if self.rank_tol is not None:
            return max(float(self.rank_tol), RANK_TOL_FLOOR)
        return default_rank_tol(float(self.lam), resolve_dtype(self.dtype))

    def _settings(self) -> tuple[torch.device, torch.dtype, int, float]:
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype)
        budget = default_memory_budget(device) if self.memory_budget is None else int(
            self.memory_budget)
        cg_tol = self.cg_tol
        if cg_tol is None:
            cg_tol = ONESTEP_CG_TOL if self.schedule == "onestep" else 1e-8
        return device, dtype, budget, float(cg_tol)

    def window_budget(self) -> int | None:
        """Memory (bytes) the ``"window"`` features of a narrow kernel may take, or
        ``None`` where they are not used. They serve PCG only (``inner="auto"``
        then uses PCG with them), so ``inner="direct"`` keeps the dense features, and
        so do the one-step schedule (its published single PCG step stays as it was)
        and GPUs (the windowed products have not been measured there yet)."""
        device, _, budget, _ = self._settings()
        if self.schedule == "onestep" or self.inner == "direct" or device.type != "cpu":
            return None
        return budget

    def feature_mode(self, n: int, rank: int) -> tuple[str, str]:
        """Inner solver and feature storage for ``n`` events and rank ``rank``."""
        _, dtype, budget, _ = self._settings()
        inner = self.inner
        if inner == "auto":
            inner = "direct" if rank <= AUTO_DIRECT_MAX_RANK else "cg"
        item = torch.finfo(dtype).bits // 8
        fits = n * rank * item <= budget
        return inner, (("phi" if inner == "direct" else "kernel") if fits else "lazy")

    def _fit_basis(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sw: np.ndarray,
        basis: NystromBasis,
        *,
        feat: _Features | None = None,
        t0: float | None = None,
        init_decision: np.ndarray | None = None,
    ) -> KernelLogisticRegression:
        """Fit with a given basis (and optionally precomputed features of ``X``).

        ``basis.candidate_idx`` must index rows of ``X``. Inputs are trusted (this is
        the inner loop of :meth:`fit` and of shared-centre toys).
        """
        t0 = time.perf_counter() if t0 is None else t0
        n, d = X.shape
        _, dtype, _, cg_tol = self._settings()
        r = basis.rank
        inner, mode = self.feature_mode(n, r)
        # features built here may borrow the enclosing reuse_feature_memory() block
        memory = None
        if feat is None:
            Xt = basis.events(X, dtype)
            memory = current_feature_memory()
            feat = basis.features(Xt, mode, self.block_bytes, self.window_budget(), memory)
        if feat.mode == "window":
            inner = "cg"  # window features serve Hessian-vector products only
        try:
            beta, f, info, precond_used, t_setup = self._solve(feat, y, sw, basis, inner,
                                                               cg_tol, init_decision)
        finally:
            if memory is not None:  # nothing kept from this fit refers to the features
                memory.release(feat.borrow_token)
        t_end = time.perf_counter()
        M = basis.n_candidates
        info.n_centers, info.rank, info.rank_tol = M, r, basis.rank_tol
        info.preconditioner = precond_used if info.n_cg > 0 else "none"
        info.rank_residual, info.materialised = basis.residual, feat.materialised
        info.features = feat.mode
        info.time_setup, info.time_solve, info.time_total = (
            t_setup - t0, t_end - t_setup, t_end - t0)
        log.debug("fit: n=%d M=%d rank=%d (residual %.2e) inner=%s features=%s "
                  "setup %.3fs solve %.3fs: %s", n, M, r, basis.residual, inner, feat.mode,
                  info.time_setup, info.time_solve, info.message)
        if not info.converged:
            log.log(logging.WARNING if _WARN_NOT_CONVERGED.get() else logging.DEBUG,
                    "kernel fit did not converge: %s", info.message)
        self._set_fitted(basis, d, beta, f, info)
        return self

    def _solve(self, feat: _Features, y: np.ndarray, sw: np.ndarray, basis: NystromBasis,
               inner: str, cg_tol: float, init_decision: np.ndarray | None
               ) -> tuple[torch.Tensor, torch.Tensor, FitInfo, str, float]:
        """Newton on the given features: ``(beta, f, info, preconditioner, t_setup)``
        with ``f`` in the events' order and ``t_setup`` the clock when Newton began."""
        device = feat.X.device
        sign = torch.as_tensor(2.0 * y - 1.0, dtype=torch.float64, device=device)
        swt = torch.as_tensor(sw, dtype=torch.float64, device=device)
        cidx = torch.as_tensor(basis.candidate_idx, device=device)
        f0 = None if init_decision is None else torch.as_tensor(
            init_decision, dtype=torch.float64, device=device)
        perm = feat.perm
        if perm is not None:  # the solver works in the features' (sorted) event order
            sign, swt = sign[perm], swt[perm]
            f0 = None if f0 is None else f0[perm]
            cidx = torch.argsort(perm)[cidx]
        t_setup = time.perf_counter()
        precond = "centres" if self.schedule == "onestep" else CONVERGED_PRECONDITIONER
        solver = _NewtonSolver(feat, sign, swt, float(self.lam), basis.L, cidx, inner, cg_tol,
                               int(self.cg_max_iter), precond)
        beta, f, info = solver.solve(self.schedule, float(self.tol), int(self.max_iter), None,
                                     f0)
        if perm is not None:
            f = torch.empty_like(f).index_copy_(0, perm, f)
        return beta, f, info, solver.precond, t_setup

    def _set_fitted(self, basis: NystromBasis, d: int, beta: torch.Tensor, f: torch.Tensor,
                    info: FitInfo) -> None:
        """Store the fitted state (``f`` and ``beta`` are the solver's, not views of
        the training features)."""
        M, r = basis.n_candidates, basis.rank
        self.sigma_ = basis.sigma
        self.n_centers_ = M
        self.rank_ = r
        self.n_features_in_ = d
        self.classes_ = np.array([0, 1])
        self._P = basis.P
        self._L_P = basis.L_P
        self._shift = basis.shift
        self._beta = beta
        self.beta_ = beta.cpu().numpy()
        self.coef_ = torch.linalg.solve_triangular(
            basis.L_P.T, beta.unsqueeze(1), upper=True).squeeze(1).cpu().numpy()
        self.centers_ = basis.P.cpu().numpy()
        self.center_indices_ = basis.candidate_idx[basis.pivots]
        self.candidate_indices_ = basis.candidate_idx
        self.train_decision_ = f.cpu().numpy()
        self.fit_info_ = info

    def _resolve_sigma(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                       sw: np.ndarray | None = None) -> float:
        if isinstance(self.sigma, str):
            from ..preprocess import sigma_from_percentile

            ref = (y == 0) if (y == 0).any() else np.ones(len(y), dtype=bool)
            return sigma_from_percentile(X[ref], 90.0, rng=rng,
                                         weights=None if sw is None else sw[ref])
        return float(self.sigma)

    # -- prediction ---------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """The learned ``f(x)`` (the log-odds; NPLM: the log density ratio)."""
        self._check_fitted()
        X = _check_2d(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {X.shape[1]} features but the model was fitted with {self.n_features_in_}"
            )
        dtype = resolve_dtype(self.dtype)
        Xt = shifted_events(X, self._shift, dtype)  # as the training events
        feat = _Features(Xt, self._P, self._L_P, self.sigma_, "lazy", self.block_bytes,
                         self._shift)
        # f = beta^T L_P^-1 K: the kernel coefficients once (float64, through the
        # features' explicit inverse), then one r x n product per block instead of
        # forming the features (r^2 n)
        alpha = feat._L_P_inv64.T @ self._beta.to(torch.float64)
        out = torch.empty(X.shape[0], dtype=torch.float64)
        for sl in feat._slices():
            out[sl] = (alpha @ feat._kT_block(sl).to(torch.float64)).cpu()
        return out.numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[P(y=0), P(y=1)]`` (weighted-loss calibrated)."""
        f = self.decision_function(X)
        p1 = 1.0 / (1.0 + np.exp(-f))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (``f > 0``)."""
        return (self.decision_function(X) > 0).astype(int)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Minus the mean weighted logistic loss on ``(X, y)`` (higher is better).

        The loss the fit minimises, without the penalty: what a model selection
        (e.g. ``sklearn.model_selection.GridSearchCV`` over ``sigma``, ``n_centers``,
        ``lam`` on held-out reference-only data) should compare.
        """
        f = self.decision_function(X)
        y, w = _check_labels_and_weights(y, sample_weight, f.shape[0])
        y = y.astype(np.float64)
        # y log(1 + e^-f) + (1 - y) log(1 + e^f), stable softplus forms
        loss = y * np.logaddexp(0.0, -f) + (1.0 - y) * np.logaddexp(0.0, f)
        return float(-(w * loss).mean())
