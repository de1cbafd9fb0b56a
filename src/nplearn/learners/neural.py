"""The NPLM neural network: the original learner of the NPLM test.

A small fully connected network ``f(x)`` is trained on the reference (label 0,
weight ``w_i``) and the data (label 1, weight 1) by minimising the extended
likelihood loss of the NPLM papers,

    L(f) = sum_R w (e^f - 1) - sum_D f,

whose value at the end of training gives the statistic ``t = -2 L``: exactly the
``t = 2 [sum_D f - sum_R w (e^f - 1)]`` that :func:`nplearn.stats.nplm_statistic`
computes from any learned ``f``. Every weight (not the biases, as in the published
networks) is clipped to ``[-weight_clip, weight_clip]``; the clip bounds the network's
capacity, and the
published studies tune it so that the null distribution of ``t`` follows a
chi-square with as many degrees of freedom as the network has parameters.

Two training procedures are offered. They define different statistics (each is
calibrated by toys trained the same way):

``"adam"``
    The published procedure: full-batch Adam for a fixed number of epochs, the
    weights clipped after every step.
``"lbfgs"``
    Box-constrained L-BFGS (scipy's L-BFGS-B, float64) run until the projected
    gradient of the clipped problem vanishes (relative to the data yield): the same loss
    and constraint, far fewer passes over the data. It needs a smooth network (sigmoid
    or tanh).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .._torch_utils import resolve_device, resolve_dtype, torch_threads
from ..errors import InputError
from ._base import EstimatorProtocol
from .kernel import _as_generator, _check_2d, _check_labels_and_weights

__all__ = ["ACTIVATIONS", "DEFAULT_EPOCHS", "OPTIMIZERS", "NeuralFitInfo",
           "NeuralNetworkLearner", "default_hidden", "default_weight_clip", "n_parameters"]

#: Training procedures (see the module docstring).
OPTIMIZERS = ("adam", "lbfgs")

#: Default ``epochs`` of each optimiser (L-BFGS-B: an iteration cap it rarely reaches).
DEFAULT_EPOCHS = {"lbfgs": 10000, "adam": 50000}

#: Hidden-layer activations.
ACTIVATIONS = ("sigmoid", "tanh", "relu")

#: L-BFGS-B counts as converged when the norm of the projected gradient of the loss is
#: at most this times the data yield (the loss's size; ``dL/db_out = N_w - N_D``).
GRAD_RTOL = 1e-6

#: Most L-BFGS-B runs of one start (each restarts from the last point with fresh
#: curvature memory while the gradient is above the tolerance and the loss falls).
LBFGS_ROUNDS = 5

#: Fraction of the iterations at the end of training over which the plateau of the
#: loss is measured (:attr:`NeuralFitInfo.suboptimality`).
PLATEAU_FRACTION = 0.1


def default_hidden(n_features: int) -> tuple[int, ...]:
    """Hidden layers of the published networks: 1-4-1 in 1D, and three hidden layers
    as wide as the input otherwise (5-5-5-5-1 in 5D)."""
    return (4,) if n_features == 1 else (n_features,) * 3


def _clip_bound(clip: float, dtype: torch.dtype) -> float:
    """The weight clip as ``dtype`` holds it, rounded towards zero (float32's nearest
    2.15 is 2.1500001, which would leave weights beyond the clip)."""
    bound = torch.tensor(clip, dtype=dtype)
    if float(bound) > clip:
        bound = torch.nextafter(bound, torch.zeros_like(bound))
    return float(bound)


def default_weight_clip(n_features: int) -> float:
    """Weight clip of the published networks: 9 in 1D, 2.15 otherwise (their 5D value).

    The clip should be tuned for each problem so that the null ``t`` follows a
    chi-square with ``dof`` close to the number of parameters (compare the chi-square
    fit of the toys with :attr:`NeuralNetworkLearner.n_params_`)."""
    return 9.0 if n_features == 1 else 2.15


def n_parameters(n_features: int, hidden: tuple[int, ...]) -> int:
    """Trainable parameters (weights and biases) of the network."""
    sizes = (n_features, *hidden, 1)
    return sum(sizes[k] * sizes[k + 1] + sizes[k + 1] for k in range(len(sizes) - 1))


@dataclass
class NeuralFitInfo:
    """Diagnostics of one training (plain Python types, JSON-serialisable).

    Attributes
    ----------
    converged : bool
        ``"adam"``: the loss changed by at most ``tol`` over the last 10% of the
        epochs (a plateau, not a proof of a minimum). ``"lbfgs"``: the projected
        gradient norm is at most :data:`GRAD_RTOL` times the data yield (a
        constrained stationary point of the kept start; the loss is not convex, so
        not necessarily the global minimum).
    optimizer : str
        ``"adam"`` or ``"lbfgs"``.
    n_iter : int
        Epochs (Adam) or L-BFGS-B iterations of the kept start.
    n_evals : int
        Loss and gradient evaluations (passes over the training set), all starts
        (an Adam start that diverged counts 0).
    objective : float
        Final loss ``L``; ``t = -2 L`` on the training set.
    grad_norm : float
        Norm of the projected gradient of ``L`` at the end (components pushing a
        weight beyond its clip left out).
    suboptimality : float
        Decrease of ``L`` over the last 10% of the iterations: how far training
        was still moving (``t`` moves by twice this).
    rank : int
        Trainable parameters (the dimension of the problem, named as the kernel
        learner's kept rank so that toy records share one layout).
    n_params : int
        Trainable parameters.
    weight_clip : float
        Bound on every weight (the biases are free).
    at_clip : int
        Weights at the clip bound at the end (within 1e-9 of it).
    time_total : float
        Wall time of the fit in seconds.
    message : str
        How training of the kept start ended.
    n_init : int
        Starts from independent initial weights; the one with the lowest loss is kept.
    start_t : list of float
        ``-2 L`` reached by each start, NaN for a start that diverged (their spread
        shows how much local minima matter for this problem).
    history : list of [int, float]
        ``[iteration, L]`` at up to about 50 points of training.
    """

    converged: bool = False
    optimizer: str = "adam"
    n_iter: int = 0
    n_evals: int = 0
    objective: float = math.nan
    grad_norm: float = math.nan
    suboptimality: float = math.nan
    rank: int = 0
    n_params: int = 0
    weight_clip: float = math.nan
    at_clip: int = 0
    time_total: float = 0.0
    message: str = ""
    n_init: int = 1
    start_t: list[float] = field(default_factory=list)
    history: list[list[float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)


class _Buffers:
    """Work arrays reused by every pass of one fit. A pass over 2e5 events otherwise
    allocates a dozen fresh multi-megabyte tensors, and the page faults of that memory
    cost as much as the arithmetic (measured 2x per pass on one CPU thread)."""

    def __init__(self) -> None:
        self._store: dict[tuple[Any, ...], torch.Tensor] = {}

    def get(self, key: tuple[Any, ...], shape: tuple[int, ...], like: torch.Tensor
            ) -> torch.Tensor:
        buf = self._store.get(key)
        if (buf is None or buf.shape != shape or buf.dtype != like.dtype
                or buf.device != like.device):
            buf = self._store[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf


@dataclass
class _Events:
    """Training events stored feature-major, ``(d, n)``, and split into the reference
    and the data block: every layer is then a short-and-wide product, about four times
    faster on one CPU thread than the same product on ``(n, d)`` rows."""

    ref: torch.Tensor
    w_ref: torch.Tensor
    data: torch.Tensor
    w_data: torch.Tensor
    is_data: np.ndarray  # (n,) bool: where each block's events sit in the input order
    buffers: _Buffers = field(default_factory=_Buffers)

    @classmethod
    def build(cls, X: np.ndarray, y: np.ndarray, sw: np.ndarray, device: torch.device,
              dtype: torch.dtype) -> _Events:
        is_data = y == 1

        def block(mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            xb = torch.as_tensor(np.ascontiguousarray(X[mask].T), device=device).to(dtype)
            return xb, torch.as_tensor(sw[mask], device=device).to(dtype)

        ref, w_ref = block(~is_data)
        data, w_data = block(is_data)
        return cls(ref, w_ref, data, w_data, is_data)

    def in_input_order(self, f_ref: torch.Tensor, f_data: torch.Tensor) -> np.ndarray:
        """``f`` of every event, in the order of the ``X`` the events were built from."""
        out = np.empty(self.is_data.shape[0], dtype=np.float64)
        out[~self.is_data] = f_ref.detach().to(torch.float64).cpu().numpy()
        out[self.is_data] = f_data.detach().to(torch.float64).cpu().numpy()
        return out


def _layers(h: torch.Tensor, params: list[torch.Tensor], act: str,
            buffers: _Buffers | None = None, tag: str = "") -> list[torch.Tensor]:
    """Forward pass on feature-major events ``h`` (``(d, n)``) through the network whose
    layers are ``params = [W1, b1, W2, b2, ...]``: the input, every hidden layer's
    activations, and the output ``f`` as a ``(1, n)`` tensor, last. With ``buffers``
    the layers are written into its arrays (``tag`` names the block), valid until the
    next pass with the same tag."""
    outs = [h]
    n_layers = len(params) // 2
    for k in range(n_layers):
        W, b = params[2 * k], params[2 * k + 1]
        shape = (W.shape[0], h.shape[1])
        z = (torch.empty(shape, dtype=h.dtype, device=h.device) if buffers is None
             else buffers.get((tag, "z", k), shape, h))
        if h.shape[0] == 1:
            # one input feature: an outer product, cheaper as a broadcast than as a GEMM
            torch.addcmul(b[:, None], W, h, out=z)
        else:
            torch.addmm(b[:, None], W, h, out=z)
        if k < n_layers - 1:
            {"sigmoid": z.sigmoid_, "tanh": z.tanh_, "relu": z.relu_}[act]()
        outs.append(z)
        h = z
    return outs


def _backward(outs: list[torch.Tensor], params: list[torch.Tensor], act: str,
              g: torch.Tensor, grads: list[torch.Tensor], buffers: _Buffers,
              tag: str) -> None:
    """Add to ``grads`` the gradient of ``sum_i g_i f_i`` with respect to ``params``,
    given the forward pass ``outs`` of :func:`_layers` and ``g = dL/df`` (``(1, n)``)."""
    for k in range(len(params) // 2 - 1, -1, -1):
        h = outs[k]
        grads[2 * k] += g @ h.T
        grads[2 * k + 1] += g.sum(1)
        if k == 0:
            break
        W = params[2 * k]
        g_in = buffers.get((tag, "g", k), tuple(h.shape), h)
        if W.shape[0] == 1:
            torch.mul(W.T, g, out=g_in)
        else:
            torch.mm(W.T, g, out=g_in)
        g = g_in
        # times the activation's derivative, from its output, in place: autograd's own
        # fused kernels (one pass; 1 - h taken first, exact where a unit saturates)
        if act == "sigmoid":
            torch.ops.aten.sigmoid_backward.grad_input(g, h, grad_input=g)
        elif act == "tanh":
            torch.ops.aten.tanh_backward.grad_input(g, h, grad_input=g)
        else:
            g.masked_fill_(h <= 0, 0.0)


def _forward_block(h: torch.Tensor, params: list[torch.Tensor], act: str) -> torch.Tensor:
    """``f`` of feature-major events ``h`` (``(d, n)``), as an ``(n,)`` tensor."""
    return _layers(h, params, act)[-1][0]


def _forward(X: torch.Tensor, params: list[torch.Tensor], act: str) -> torch.Tensor:
    """``f(X)`` for row-major events ``X`` (``(n, d)``)."""
    return _forward_block(X.T.contiguous(), params, act)


#: Above this ``f`` the reference term ``e^f - 1`` of the loss continues as its
#: second-order Taylor polynomial (same value, slope and curvature at the joint), so that
#: a trial step of the optimiser that sends ``f`` beyond float64 overflow (e^709.8)
#: gives a large finite loss and gradient (up to f ~ 1e23), and the line search backs
#: off. Minima lie far below: one reference event with ``f = 600`` costs ~1e260.
F_OVERFLOW = 600.0

#: :data:`F_OVERFLOW` of float32 losses (Adam), whose exponential overflows at 88.7.
F_OVERFLOW_FLOAT32 = 80.0


def _ref_term(f: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each reference event's ``e^f - 1`` and its slope ``e^f``, continued quadratically
    above :data:`F_OVERFLOW` (``out``: where to write both when no event is beyond it,
    the common case)."""
    f0 = F_OVERFLOW if f.dtype == torch.float64 else F_OVERFLOW_FLOAT32
    # the test reads f back to the host: on a GPU it would stall every Adam epoch, so
    # there the continued form (exact below the joint too) is always used
    if f.numel() == 0 or (f.device.type == "cpu" and float(f.max()) <= f0):
        if out is None:
            value = torch.expm1(f)
            return value, value + 1.0
        torch.expm1(f, out=out[0])
        return out[0], torch.add(out[0], 1.0, out=out[1])
    over = (f - f0).clamp(min=0.0)
    value = torch.expm1(f.clamp(max=f0))
    e0 = math.exp(f0)
    return value + e0 * (over + 0.5 * over**2), value + 1.0 + e0 * over


def _loss_and_grad(ev: _Events, params: list[torch.Tensor], act: str,
                   with_grad: bool = True) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """The NPLM loss ``sum_R w (e^f - 1) - sum_D w f`` (data weights are 1 in the NPLM
    test) and, with ``with_grad``, its gradient with respect to ``params``: one forward
    and one hand-written backward pass over each block, in reused buffers (the network
    is too thin for autograd's bookkeeping and fresh allocations to pay; measured 3.3x
    faster than autograd per pass in 1D, 2.3x in 5D, benchmarks/neural_pass.py)."""
    buf = ev.buffers
    outs_r = _layers(ev.ref, params, act, buf, "ref")
    outs_d = _layers(ev.data, params, act, buf, "data")
    f_r = outs_r[-1][0]
    n_r = (f_r.shape[0],)
    value, slope = _ref_term(f_r, out=(buf.get(("ref", "value"), n_r, f_r),
                                       buf.get(("ref", "slope"), n_r, f_r)))
    loss = torch.dot(ev.w_ref, value) - torch.dot(ev.w_data, outs_d[-1][0])
    if not with_grad:
        return loss, None
    grads = [torch.zeros_like(p) for p in params]
    g_r = buf.get(("ref", "g_out"), (1, n_r[0]), f_r)
    torch.mul(ev.w_ref, slope, out=g_r[0])
    _backward(outs_r, params, act, g_r, grads, buf, "ref")
    _backward(outs_d, params, act, -ev.w_data[None, :], grads, buf, "data")
    return loss, grads


class NeuralNetworkLearner(EstimatorProtocol):
    """NPLM neural network with weight clipping (scikit-learn style).

    Parameters
    ----------
    hidden : sequence of int, optional
        Hidden-layer widths; default :func:`default_hidden` of the number of
        features (1-4-1 in 1D, d-d-d-d-1 otherwise).
    activation : {"sigmoid", "tanh", "relu"}
        Hidden-layer activation (sigmoid in the published networks).
    weight_clip : float, optional
        Every weight is kept in ``[-weight_clip, weight_clip]`` (the biases are free,
        as in the published networks); default :func:`default_weight_clip` (9 in 1D,
        2.15 otherwise).
    optimizer : {"lbfgs", "adam"}
        ``"lbfgs"`` (default): L-BFGS-B on the clipped problem, at most ``epochs``
        iterations, until the projected gradient vanishes (sigmoid or tanh only).
        ``"adam"``: full-batch Adam for ``epochs`` epochs, clipping after each step
        (the published procedure).
    epochs : int, optional
        Adam epochs, or the L-BFGS-B iteration cap; default
        :data:`DEFAULT_EPOCHS` of the optimiser.
    lr : float
        Adam learning rate.
    tol : float
        Adam: the fit counts as converged when ``L`` moved by at most ``tol`` over
        the last 10% of the epochs (``t`` by ``2 tol``). Training always runs all
        ``epochs``: the statistic is defined by the procedure.
    n_init : int
        Trainings from independent initial weights; the one reaching the lowest
        loss (the largest ``t``) is kept. The loss has local minima: on the 1D
        benchmark the ``t`` of four starts of one fit differ by 3.7 in the median
        (up to 26 on a signal toy). Keeping the best of 4 raised the null ``t`` as
        much as the signals' and gained no power (median Z +0.14, +0.03, -0.26 on
        the tail, bulk and non-resonant signals, the last about two paired standard
        errors; BENCHMARKS.md) at four times the cost, so the default is one start,
        as published.
    dtype : {"float64", "float32"}
        Precision of the network and the loss (L-BFGS-B always uses float64).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    random_state : int, numpy Generator or SeedSequence, optional
        Initial weights (Glorot-uniform, biases zero) are drawn from it.

    Attributes
    ----------
    n_features_in_ : int
    hidden_ : tuple of int
        Hidden layers used.
    weight_clip_ : float
        Clip used.
    n_params_ : int
        Trainable parameters.
    coefs_ : list of numpy.ndarray
        ``[W1, b1, W2, b2, ...]`` after training.
    train_decision_ : numpy.ndarray
        ``f`` on the training events.
    fit_info_ : NeuralFitInfo
        Diagnostics of the training.
    """

    _PARAM_NAMES = ("hidden", "activation", "weight_clip", "optimizer", "epochs", "lr", "tol",
                    "n_init", "dtype", "device", "random_state")
    _FITTED_ATTR = "coefs_"

    def __init__(
        self,
        hidden: Any = None,
        activation: str = "sigmoid",
        weight_clip: float | None = None,
        *,
        optimizer: str = "lbfgs",
        epochs: int | None = None,
        lr: float = 1e-3,
        tol: float = 0.05,
        n_init: int = 1,
        dtype: str = "float64",
        device: str = "cpu",
        random_state: Any = None,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.weight_clip = weight_clip
        self.optimizer = optimizer
        self.epochs = epochs
        self.lr = lr
        self.tol = tol
        self.n_init = n_init
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    # -- validation ---------------------------------------------------------------
    def resolved_hidden(self, n_features: int) -> tuple[int, ...]:
        """The hidden layers a fit on ``n_features`` features uses."""
        if self.hidden is None:
            return default_hidden(n_features)
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else self.hidden
        try:
            out = tuple(int(h) for h in hidden)
        except (TypeError, ValueError):
            raise InputError(f"hidden must be a sequence of positive integers, got "
                             f"{self.hidden!r}") from None
        if not out or any(h < 1 or h != float(x) for h, x in zip(out, hidden, strict=True)):
            raise InputError(f"hidden must be a non-empty sequence of positive integers, got "
                             f"{self.hidden!r}")
        return out

    def resolved_weight_clip(self, n_features: int) -> float:
        """The weight clip a fit on ``n_features`` features uses."""
        return default_weight_clip(n_features) if self.weight_clip is None \
            else float(self.weight_clip)

    def resolved_epochs(self) -> int:
        """``epochs``, or the default of the optimiser."""
        return DEFAULT_EPOCHS.get(self.optimizer, 1) if self.epochs is None else self.epochs

    def _validate_params(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        for name in ("weight_clip", "lr", "tol"):
            v = getattr(self, name)
            if name == "weight_clip" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v <= 0:
                raise InputError(f"{name} must be a positive number, got {v!r}")
        e = self.resolved_epochs()
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 1:
            raise InputError(f"epochs must be a positive integer, got {e!r}")
        if self.optimizer == "lbfgs" and self.activation == "relu":
            raise InputError("activation 'relu' makes the loss non-smooth, which L-BFGS-B "
                             "cannot handle: use sigmoid or tanh, or optimizer='adam'")
        k = self.n_init
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"n_init must be a positive integer, got {k!r}")
        if self.dtype not in ("float64", "float32"):
            raise InputError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")

    # -- fitting ------------------------------------------------------------------
    def _init_params(self, sizes: tuple[int, ...], clip: float, seed: int,
                     device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
        """Glorot-uniform weights and zero biases (the Keras defaults of the published
        networks), clipped, from the learner's own generator."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        params = []
        for k in range(len(sizes) - 1):
            fan_in, fan_out = sizes[k], sizes[k + 1]
            a = math.sqrt(6.0 / (fan_in + fan_out))
            W = (torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) * a
            params += [W.clamp(-clip, clip), torch.zeros(fan_out, dtype=torch.float64)]
        return [p.to(device=device, dtype=dtype) for p in params]

    def fit(self, X: Any, y: Any, sample_weight: Any = None, *,
            init_decision: Any = None) -> NeuralNetworkLearner:
        """Train the network.

        Parameters
        ----------
        X : array-like, shape (n, d)
            Training events.
        y : array-like, shape (n,)
            Labels in {0, 1} (NPLM: 0 = reference, 1 = data).
        sample_weight : array-like, shape (n,), optional
            Non-negative per-event weights (NPLM: the reference weights ``w_i``,
            1 for data events).
        init_decision : None
            Accepted for interface compatibility with the kernel learner (warm
            starts across kernel widths); must be None.

        Returns
        -------
        self
        """
        t0 = time.perf_counter()
        self._validate_params()
        if init_decision is not None:
            raise InputError("NeuralNetworkLearner has no warm start: init_decision must be None")
        X = _check_2d(X, "X")
        n, d = X.shape
        y, sw = _check_labels_and_weights(y, sample_weight, n)
        hidden = self.resolved_hidden(d)
        clip = self.resolved_weight_clip(d)
        device = resolve_device(self.device)
        dtype = torch.float64 if self.optimizer == "lbfgs" else resolve_dtype(self.dtype)
        rng = _as_generator(self.random_state)
        sizes = (d, *hidden, 1)
        ev = _Events.build(X, y, sw, device, dtype)
        act = self.activation
        scale = max(1.0, float(sw[y == 1].sum()))  # the loss's size: the data yield
        starts: list[tuple[float, list[torch.Tensor], NeuralFitInfo]] = []
        failures: list[str] = []
        n_evals = 0
        # one CPU thread: the network's tensors are too thin for intra-op threads to
        # pay (measured 3x slower per pass with two threads at 2e5 events, 25x at 5e3);
        # parallelism comes from toys running in separate workers
        with torch_threads(1 if device.type == "cpu" else None):
            for _ in range(int(self.n_init)):
                # every start draws its initial weights from the fit's generator in turn
                params = self._init_params(sizes, clip, int(rng.integers(2**62)), device,
                                           dtype)
                info = NeuralFitInfo(optimizer=self.optimizer, weight_clip=clip,
                                     n_params=n_parameters(d, hidden))
                try:
                    if self.optimizer == "adam":
                        params = self._train_adam(ev, params, act, clip, info)
                    else:
                        params = self._train_lbfgs(ev, params, act, clip, info, scale)
                    loss = float(_loss_and_grad(ev, params, act, with_grad=False)[0])
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"the NPLM loss ended at {loss}")
                except FloatingPointError as exc:
                    # a diverging start is recorded and skipped; the fit fails only
                    # when every start does
                    failures.append(str(exc))
                    loss = math.nan
                n_evals += info.n_evals
                starts.append((loss, params, info))
        ok = [st for st in starts if math.isfinite(st[0])]
        if not ok:
            raise FloatingPointError(f"every start of the network diverged: {failures[0]}")
        # the kept start's loss was evaluated on these parameters after its training
        objective, params, info = min(ok, key=lambda st: st[0])
        info.rank = info.n_params
        info.n_init = len(starts)
        info.start_t = [-2.0 * st[0] for st in starts]
        info.n_evals = n_evals
        info.objective = objective
        info.grad_norm = _projected_grad_norm(ev, params, act, clip)
        if self.optimizer == "lbfgs":
            info.converged = info.grad_norm <= GRAD_RTOL * scale
            if not info.converged:
                info.message += (f"; projected gradient {info.grad_norm:.3g} > "
                                 f"{GRAD_RTOL:g} x N_D: NOT converged")
        if failures:
            info.message += f"; {len(failures)} of {len(starts)} starts diverged"
        edge = _clip_bound(clip, params[0].dtype) * (1 - 1e-9)
        info.at_clip = int(sum(int((W.abs() >= edge).sum()) for W in params[0::2]))
        info.time_total = time.perf_counter() - t0
        self.n_features_in_ = d
        self.hidden_ = hidden
        self.weight_clip_ = clip
        self.n_params_ = info.n_params
        self._act = self.activation
        self.coefs_ = [p.detach().to(torch.float64).cpu().numpy() for p in params]
        self.train_decision_ = ev.in_input_order(_forward_block(ev.ref, params, act),
                                                 _forward_block(ev.data, params, act))
        self.fit_info_ = info
        return self

    def _train_adam(self, ev: _Events, params: list[torch.Tensor], act: str, clip: float,
                    info: NeuralFitInfo) -> list[torch.Tensor]:
        params = [p.clone() for p in params]
        opt = torch.optim.Adam(params, lr=float(self.lr))
        epochs = int(self.resolved_epochs())
        every = max(1, epochs // 50)
        start_plateau = epochs - max(1, round(PLATEAU_FRACTION * epochs))
        bound = _clip_bound(clip, params[0].dtype)
        loss_plateau = math.nan
        loss_val = math.nan
        for epoch in range(epochs):
            loss, grads = _loss_and_grad(ev, params, act)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
            with torch.no_grad():
                for W in params[0::2]:  # the weights; biases are free
                    W.clamp_(-bound, bound)
            if epoch == start_plateau or epoch % every == 0 or epoch == epochs - 1:
                loss_val = float(loss.detach())
                if not math.isfinite(loss_val):
                    raise FloatingPointError(f"the NPLM loss became {loss_val} at epoch "
                                             f"{epoch} (lower lr or the weight clip)")
                if epoch == start_plateau:
                    loss_plateau = loss_val
                if epoch % every == 0 or epoch == epochs - 1:
                    info.history.append([epoch, loss_val])
        final = float(_loss_and_grad(ev, params, act, with_grad=False)[0])
        info.n_iter = epochs
        info.n_evals = epochs + 1
        info.suboptimality = abs(loss_plateau - final) if math.isfinite(loss_plateau) else 0.0
        info.converged = info.suboptimality <= float(self.tol)
        info.message = (f"{epochs} Adam epochs; the loss moved by {info.suboptimality:.3g} over "
                        f"the last {PLATEAU_FRACTION:.0%} of them"
                        + ("" if info.converged else f" (> tol = {self.tol:g}: NOT converged, "
                           "train longer or raise lr)"))
        return [p.detach() for p in params]

    def _train_lbfgs(self, ev: _Events, params: list[torch.Tensor], act: str, clip: float,
                     info: NeuralFitInfo, scale: float) -> list[torch.Tensor]:
        """L-BFGS-B on the clipped problem, restarted with fresh curvature memory while
        the projected gradient is above ``GRAD_RTOL * scale`` and the loss still falls
        (its own stopping rule, a relative decrease of the loss, also fires in flat,
        badly conditioned valleys of saturated sigmoids)."""
        from scipy.optimize import minimize
        from threadpoolctl import threadpool_limits

        shapes = [p.shape for p in params]
        sizes = [p.numel() for p in params]
        losses: list[float] = []

        def unpack(v: np.ndarray) -> list[torch.Tensor]:
            flat = torch.as_tensor(v, device=ev.ref.device, dtype=torch.float64)
            out, k = [], 0
            for shape, size in zip(shapes, sizes, strict=True):
                out.append(flat[k:k + size].reshape(shape).clone())
                k += size
            return out

        def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
            loss, grads = _loss_and_grad(ev, unpack(v), act)
            val = float(loss)
            grad = torch.cat([g.reshape(-1) for g in grads]).cpu().numpy()
            if not (math.isfinite(val) and np.isfinite(grad).all()):
                # beyond even the continued loss (f ~ 1e150): L-BFGS-B stops at its last
                # good point on an infinite value, and the next round restarts from there
                return math.inf, np.zeros(sum(sizes))
            losses.append(val)
            return val, grad

        # weights within the clip, biases free (as in the published networks)
        bounds = [b for k, size in enumerate(sizes)
                  for b in [((-clip, clip) if k % 2 == 0 else (None, None))] * size]
        x = torch.cat([p.reshape(-1) for p in params]).cpu().numpy().astype(np.float64)
        iters: list[float] = []
        budget = int(self.resolved_epochs())
        n_iter = n_evals = 0
        res = None
        # one BLAS thread: its vectors are short, and idle BLAS threads spinning
        # against the other toy workers made toys 3.6x slower (two workers, two cores)
        with threadpool_limits(1, user_api="blas"):
            before = math.inf
            for _ in range(LBFGS_ROUNDS):
                res = minimize(fun, x, jac=True, method="L-BFGS-B", bounds=bounds,
                               callback=lambda xk: iters.append(losses[-1]),
                               options={"maxiter": max(1, budget - n_iter),
                                        "maxfun": 4 * max(1, budget - n_iter),
                                        # scipy's gtol bounds the largest component
                                        "ftol": 1e-14,
                                        "gtol": GRAD_RTOL * scale / math.sqrt(x.size),
                                        "maxcor": 20})
                x, n_iter, n_evals = res.x, n_iter + int(res.nit), n_evals + int(res.nfev)
                g = _projected_grad_norm(ev, unpack(x), act, clip)
                if (g <= GRAD_RTOL * scale or n_iter >= budget
                        or before - float(res.fun) <= 1e-12 * abs(float(res.fun))):
                    break
                before = float(res.fun)
        assert res is not None
        info.n_iter, info.n_evals = n_iter, n_evals
        every = max(1, len(iters) // 50)
        info.history = [[k, v] for k, v in enumerate(iters) if k % every == 0]
        if iters:
            k0 = max(0, len(iters) - 1 - max(1, round(PLATEAU_FRACTION * len(iters))))
            info.suboptimality = abs(iters[k0] - float(res.fun))
        else:
            info.suboptimality = 0.0
        msg = res.message.decode() if isinstance(res.message, bytes) else str(res.message)
        info.message = (f"L-BFGS-B: {msg.lower()} after {n_iter} iterations"
                        + (" (the iteration cap: raise epochs)" if n_iter >= budget else ""))
        return [p.detach() for p in unpack(x)]

    # -- prediction ---------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """The learned ``f(x)`` (NPLM: the log density ratio)."""
        self._check_fitted()
        X = _check_2d(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {X.shape[1]} features but the model was fitted with {self.n_features_in_}"
            )
        params = [torch.as_tensor(c) for c in self.coefs_]
        return _forward(torch.as_tensor(X), params, self._act).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[P(y=0), P(y=1)]`` with the weights of the fit."""
        p1 = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (``f > 0``)."""
        return (self.decision_function(X) > 0).astype(int)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Minus the mean NPLM loss on ``(X, y)`` (higher is better)."""
        f = self.decision_function(X)
        y, w = _check_labels_and_weights(y, sample_weight, f.shape[0])
        per_event = np.where(y == 1, -f, np.expm1(f))
        return float(-(w * per_event).mean())


def _projected_grad_norm(ev: _Events, params: list[torch.Tensor], act: str,
                        clip: float) -> float:
    """Norm of the gradient of ``L`` without the components that push a weight at its
    clip bound outwards (zero at a constrained minimum; biases are unbounded)."""
    _, grads = _loss_and_grad(ev, params, act)
    assert grads is not None
    total = 0.0
    edge = _clip_bound(clip, params[0].dtype) * (1 - 1e-9)
    for k, (p, g) in enumerate(zip(params, grads, strict=True)):
        if k % 2 == 0:  # a weight matrix
            at_hi = p >= edge
            at_lo = p <= -edge
            g[at_hi & (g < 0)] = 0.0  # descent would push the weight beyond +clip
            g[at_lo & (g > 0)] = 0.0
        total += float((g.to(torch.float64) ** 2).sum())
    return math.sqrt(total)
