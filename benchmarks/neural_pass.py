"""Cost of one pass (loss and gradient) of the NPLM network over a toy, on one thread.

Compares the library's pass (feature-major events split into reference and data
blocks, a hand-written backward pass, buffers reused across passes) with the
implementation it replaced, restated here: autograd on row-major events with the loss
as one masked sum. Both compute the same loss and gradient (the largest relative
difference is recorded); a fit of L-BFGS-B takes several hundred passes, so the pass
sets the time per toy.

Sizes: the 1D benchmark (1-4-1 network, N_R = 2e5, N(R) = 2000) and gauss5d at its
default sizes (5-5-5-5-1, N_R = 1e5, N(R) = 5000). Each timing is the median of
``--repeats`` runs of ``--passes`` passes (the machine's timings vary by up to 2x
between runs).

    python neural_pass.py
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Any

import numpy as np
import torch

from nplearn.learners import neural
from nplearn.learners.neural import default_hidden

from _common import save

CASES = ({"d": 1, "n_ref": 200_000, "n_data": 2000},
         {"d": 5, "n_ref": 100_000, "n_data": 5000})


def _autograd_pass(X: torch.Tensor, is_data: torch.Tensor, w: torch.Tensor,
                   params: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    """The replaced implementation: row-major forward, loss as one masked sum, autograd."""
    ps = [p.clone().requires_grad_(True) for p in params]
    h = X
    n_layers = len(ps) // 2
    for k in range(n_layers):
        h = h @ ps[2 * k].T + ps[2 * k + 1]
        if k < n_layers - 1:
            h = torch.sigmoid(h)
    f = h[:, 0]
    loss = torch.where(is_data, -f, torch.expm1(f)).mul(w).sum()
    grads = torch.autograd.grad(loss, ps)
    return float(loss.detach()), list(grads)


def _time(fn: Any, args: tuple[Any, ...], passes: int, repeats: int) -> float:
    for _ in range(3):
        fn(*args)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(passes):
            fn(*args)
        runs.append((time.perf_counter() - t0) / passes)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for case in CASES:
        d, n_r, n_d = case["d"], case["n_ref"], case["n_data"]
        rng = np.random.default_rng(0)
        X = rng.normal(size=(n_r + n_d, d))
        y = np.r_[np.zeros(n_r), np.ones(n_d)]
        w = np.r_[np.full(n_r, n_d / n_r), np.ones(n_d)]
        sizes = (d, *default_hidden(d), 1)
        params = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            params += [torch.as_tensor(rng.uniform(-1, 1, (fan_out, fan_in))),
                       torch.as_tensor(rng.uniform(-0.1, 0.1, fan_out))]
        ev = neural._Events.build(X, y, w, torch.device("cpu"), torch.float64)
        Xt, is_data, wt = torch.as_tensor(X), torch.as_tensor(y == 1), torch.as_tensor(w)
        loss_a, grads_a = _autograd_pass(Xt, is_data, wt, params)
        loss_b, grads_b = neural._loss_and_grad(ev, params, "sigmoid")
        assert grads_b is not None
        rel = max(float((ga - gb).abs().max() / ga.abs().max())
                  for ga, gb in zip(grads_a, grads_b, strict=True))
        before = _time(_autograd_pass, (Xt, is_data, wt, params), a.passes, a.repeats)
        after = _time(neural._loss_and_grad, (ev, params, "sigmoid"), a.passes, a.repeats)
        row = {**case, "architecture": "-".join(map(str, sizes)),
               "autograd_ms": before * 1e3, "library_ms": after * 1e3,
               "speedup": before / after, "loss_rel_diff": abs(loss_a - float(loss_b))
               / abs(loss_a), "grad_rel_diff": rel}
        print(row, flush=True)
        rows.append(row)
    out = save("neural_pass", {"passes": a.passes, "repeats": a.repeats, "rows": rows,
                               "torch": torch.__version__})
    print(f"written {out}")


if __name__ == "__main__":
    main()
