"""nplearn versus scikit-learn's Nystroem + LogisticRegression, same toys, same run.

What a newcomer would write: ``Nystroem(gamma=1/(2 sigma^2), n_components=M)``
features and a weighted ``LogisticRegression(C=1/(n lambda), fit_intercept=False)``
(the same objective as nplearn's). Every fit uses the same M centres
(scikit-learn's draw), so the t values are comparable; the converged reference
is the dense float64 Newton solver of ``nplearn.learners.reference``. Timings
include each method's whole fit (feature construction and solve), one thread
each (the toys of a calibration run one per core).

    python benchmarks/vs_sklearn.py --centers 1000 --toys 5
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from nplearn import KernelLogisticRegression
from nplearn.learners.kernel import NystromBasis
from nplearn.learners.reference import dense_newton

from _common import save
from speed_1d import t_of, toy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--centers", type=int, default=1000)
    p.add_argument("--toys", type=int, default=5)
    p.add_argument("--seed", type=int, default=321)
    p.add_argument("--no-dense", action="store_true", help="skip the dense reference")
    a = p.parse_args()
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    sigma, lam, M = 0.3, 1e-10, a.centers
    rows = []
    for i in range(a.toys):
        X, y, sw, s_fit = toy(i, a.seed)
        n = len(X)
        row: dict = {"toy": i, "n": n}
        # nplearn as used in a calibration: its own centres
        t0 = time.perf_counter()
        own = KernelLogisticRegression(sigma=sigma, n_centers=M, lam=lam,
                                       random_state=np.random.default_rng(s_fit)).fit(X, y, sw)
        row["nplearn_s"] = time.perf_counter() - t0
        row["t_nplearn_own_centres"] = t_of(own.train_decision_, y, sw)
        # scikit-learn, default tolerance and tight tolerance
        nys = Nystroem(gamma=1.0 / (2 * sigma**2), n_components=M, random_state=a.seed + i)
        for tag, tol, max_iter in (("sklearn_tol1e-4", 1e-4, 100),
                                   ("sklearn_tol1e-6", 1e-6, 10000)):
            with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                t0 = time.perf_counter()
                Phi = nys.fit_transform(X)
                clf = LogisticRegression(C=1.0 / (n * lam), fit_intercept=False, tol=tol,
                                         max_iter=max_iter)
                clf.fit(Phi, y, sample_weight=sw)
                f = clf.decision_function(Phi)
                row[f"{tag}_s"] = time.perf_counter() - t0
            row[f"t_{tag}"] = t_of(f, y, sw)
            row[f"{tag}_iter"] = int(clf.n_iter_[0])
            row[f"{tag}_warned"] = any(issubclass(w.category, ConvergenceWarning)
                                       for w in caught)
        idx = np.sort(nys.component_indices_)
        # nplearn on scikit-learn's centres
        m = KernelLogisticRegression(sigma=sigma, n_centers=M, lam=lam)
        t0 = time.perf_counter()
        basis = NystromBasis.build(X, idx, sigma, m.resolved_rank_tol(), torch.device("cpu"))
        m._fit_basis(X, y, sw, basis)
        row["nplearn_same_centres_s"] = time.perf_counter() - t0
        row["t_nplearn"] = t_of(m.train_decision_, y, sw)
        row["J_nplearn"] = m.fit_info_.objective
        if not a.no_dense:
            _, f_ref, J_ref = dense_newton(X, y, sw, X[idx], sigma, lam, rel_eig=1e-16)
            row["t_dense"] = t_of(f_ref, y, sw)
            row["J_dense"] = J_ref
        rows.append(row)
        print(row, flush=True)
    summary = {k: float(np.median([r[k] for r in rows])) for k in
               ("nplearn_s", "sklearn_tol1e-4_s", "sklearn_tol1e-6_s")}
    summary["speedup_vs_tol1e-4"] = summary["sklearn_tol1e-4_s"] / summary["nplearn_s"]
    summary["speedup_vs_tol1e-6"] = summary["sklearn_tol1e-6_s"] / summary["nplearn_s"]
    print(summary)
    save(f"vs_sklearn_M{M}", {"centers": M, "sigma": sigma, "lam": lam, "toys": rows,
                              "summary": summary})


if __name__ == "__main__":
    main()
