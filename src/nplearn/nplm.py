"""The whole NPLM goodness-of-fit test in one call: :func:`nplm_test`."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import logging
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._torch_utils import resolve_device, torch_threads
from ._version import __version__, git_commit, source_digest
from .config import NPLMConfig
from .envelope import decode_values, envelope, make_probe, probe_values
from .errors import InputError, NplearnError
from .io import as_events, as_weights, check_same_columns, write_json_atomic
from .learners import NeuralNetworkLearner, make_learner
from .learners.kernel import KernelLogisticRegression, default_n_centers
from .learners.neural import n_parameters
from .multitest import COMBINATIONS, CombinedResult, bonferroni_bound, combine_all
from .preprocess import Standardizer, sigma_from_percentile
from .stats import Calibration, calibrate
from .toys import (
    WARM_START_WIDTHS,
    ToyEngine,
    ToyGenerator,
    ToyResult,
    fit_widths,
    normalised_weights,
    nplm_fit,
    nplm_fit_shared,
    observed_seed,
    run_toys,
    shared_basis,
    toy_memory_budget,
    width_learner_params,
)

__all__ = ["NPLMResult", "nplm_test", "nplm_toys", "provenance"]

log = logging.getLogger(__name__)

#: Reference pools smaller than this multiple of N(R) make resampled toys refuse.
MIN_POOL_RATIO = 2.0


def provenance() -> dict[str, Any]:
    """Versions and platform, recorded in every result."""
    import scipy
    import torch

    return {
        "nplearn": __version__,
        "nplearn_source": source_digest(),
        "nplearn_git": git_commit(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass
class NPLMResult:
    """Outcome of :func:`nplm_test`.

    Attributes
    ----------
    t_obs : float
        Observed test statistic ``t = 2[sum_D f - sum_R w (e^f - 1)]``.
    n_w : float
        Fitted expected yield ``sum_R w e^f`` on the observed data (compare with
        ``n_data``: at the optimum they are close when the model is flexible).
    p_value, z : float
        Reported p-value and significance; ``calibration.method`` says whether they
        come from the toys or the chi-square extrapolation.
    calibration : Calibration
        Both p-values and Z, the chi-square dof and its goodness of fit.
    t_null : numpy.ndarray
        Null statistics of the successful toys (ordered by toy index).
    toys : list of ToyResult
        Every toy, including failed ones.
    n_data, n_ref : int
        Observed sample sizes; ``expected`` is ``N(R)``.
    hyperparameters : dict
        Kernel learner: sigma (and how it was chosen), n_centers, lam, the
        standardisation. Neural network (``"learner": "neural"``): architecture,
        parameters, weight clip, optimiser, the standardisation.
    fit : dict
        Diagnostics of the observed fit (iterations, gradient norm, rank, times;
        :class:`~nplearn.FitInfo` or :class:`~nplearn.NeuralFitInfo`).
    config : NPLMConfig
        The options used (reproduces the run with the same inputs).
    timings : dict
        Seconds spent in the observed fit, the toys, and in total.
    provenance : dict
        Versions, platform, host, date; the CLI adds the input files and their hashes.
    learner : KernelLogisticRegression or NeuralNetworkLearner
        The observed fit (the first width's in a multi-width run), trained on the
        *standardised* events; :meth:`f` evaluates it on events in the input units.
    width_learners : list of KernelLogisticRegression, optional
        Multi-width runs: the observed fit of every width (``f(events, width=k)``).
    widths : list of dict, optional
        Multi-width runs: per width its ``sigma``, ``t_obs``, ``n_w``, observed fit
        diagnostics and calibration (the local p-value is ``p_empirical``). The
        top-level ``t_obs``, ``n_w``, ``fit``, ``calibration`` and ``t_null`` are
        those of the first width; ``p_value`` and ``z`` those of the reported
        combination (``config.combine``); :attr:`reported` (JSON ``reported``) says
        which test and statistic the reported p-value belongs to.
    combinations : dict, optional
        Multi-width runs: every combination (min-p, fused-p, product-p, fused-t)
        with its observed statistic and toy-calibrated p-value and Z.
    combined_bound : dict, optional
        Multi-width runs: Bonferroni's bound ``min(1, k min_k p_k)`` over the widths'
        reported local p-values (:func:`nplearn.multitest.bonferroni_bound`). Never
        the reported value; it is the combined significance beyond the toys (as
        valid as the chi-square extrapolations it may use).
    t_null_widths : numpy.ndarray, optional
        Multi-width runs: null statistics, shape ``(n_ok_toys, n_widths)``.
    run : dict, optional
        Set by the command line: the input files (absolute paths) and columns, so
        that ``nplearn test --config result.json`` reruns the test.
    data_outside_reference : dict, optional
        Data events beyond the range of the reference events with positive weight
        (:func:`outside_reference`); the summary warns when there are any.
    reference_weights : dict, optional
        Weighted references: ``n_events``, ``effective_sample_size``
        (``(sum w)^2 / sum w^2``) and ``resampling_approximate`` (resampled toys
        with ``N(R)`` above a tenth of the effective size only approximate
        pseudo-data; the summary warns).
    f_envelope : dict, optional
        The null toys' envelope of ``f`` (:func:`nplearn.envelope.envelope`): where the
        toys' ``f`` (one feature) or its projection on each feature (several) falls,
        per width, at fixed reference points; the figures draw it as a band.
    combination_errors : dict, optional
        Combinations that could not be computed, with the reason (e.g. a width whose
        null toys all have the same t); when the reported one is among them, ``p_value``
        and ``z`` are NaN.
    """

    t_obs: float
    n_w: float
    p_value: float
    z: float
    calibration: Calibration | None
    t_null: np.ndarray
    toys: list[ToyResult]
    n_data: int
    n_ref: int
    expected: float
    hyperparameters: dict[str, Any]
    fit: dict[str, Any]
    config: NPLMConfig
    timings: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    learner: KernelLogisticRegression | NeuralNetworkLearner | None = field(default=None,
                                                                            repr=False)
    width_learners: list[KernelLogisticRegression] | None = field(default=None, repr=False)
    widths: list[dict[str, Any]] | None = None
    combinations: dict[str, CombinedResult] | None = None
    t_null_widths: np.ndarray | None = None
    run: dict[str, Any] | None = None
    combined_bound: dict[str, Any] | None = None
    data_outside_reference: dict[str, Any] | None = None
    reference_weights: dict[str, Any] | None = None
    f_envelope: dict[str, Any] | None = None
    combination_errors: dict[str, str] | None = None

    @property
    def reported_method(self) -> str | None:
        """Where ``p_value``/``z`` come from: ``"empirical"``, ``"chi2"`` or the
        combination (``"min-p"``...) of a multi-width run."""
        if self.combinations:
            return self.config.combine
        if self.widths:
            return None  # too few toys to combine the widths: nothing reported
        return self.calibration.method if self.calibration else None

    @property
    def p_is_bound(self) -> bool:
        """Whether the reported p-value is only an upper bound (its Z a lower bound):
        a toy p-value that no null toy reached, ``1 / (n_toys + 1)``."""
        if self.combinations:
            cr = self.combinations.get(self.config.combine)
            return bool(cr is not None and cr.n_exceed == 0)
        c = self.calibration
        return bool(c is not None and not self.widths and c.method == "empirical"
                    and c.n_exceed == 0)

    @property
    def reported(self) -> dict[str, Any]:
        """What ``p_value`` and ``z`` belong to, in one place: the ``test`` (one
        width, the network, or the combination over the widths), its observed
        ``statistic`` (``t_obs``, or the combination's), ``p_value``, ``z``,
        ``method`` and ``p_is_bound``. In a multi-width run the top-level ``t_obs``
        is the first width's, not this statistic."""
        hp = self.hyperparameters
        if self.widths:
            sig = ", ".join(f"{w['sigma']:.4g}" for w in self.widths)
            cr = (self.combinations or {}).get(self.config.combine)
            test = f"{self.config.combine} over {len(self.widths)} kernel widths ({sig})"
            stat = cr.statistic if cr is not None else float("nan")
        else:
            test = (f"neural network {hp.get('architecture', '')}".rstrip()
                    if hp.get("learner") == "neural" else
                    f"kernel width sigma = {hp.get('sigma', float('nan')):.4g}")
            stat = self.t_obs
        return {"test": test, "statistic": stat, "p_value": self.p_value, "z": self.z,
                "method": self.reported_method, "p_is_bound": self.p_is_bound}

    @property
    def n_not_converged(self) -> int:
        """Toys whose fit ended without meeting the convergence criterion (kept)."""
        return sum(t.ok and not t.converged for t in self.toys)

    @property
    def chi2_dof(self) -> float:
        """Degrees of freedom of the chi-square fitted to the null (nan without toys)."""
        return self.calibration.chi2_dof if self.calibration else float("nan")

    @property
    def n_failed_toys(self) -> int:
        """Toys whose fit failed or whose statistic was not finite (excluded)."""
        return sum(not t.ok for t in self.toys)

    def to_dict(self) -> dict[str, Any]:
        """Dictionary of everything in the result (except the learner), of plain
        Python values; non-finite numbers stay floats (NaN, ±inf), which
        :meth:`save_json` writes as ``null`` and ``"inf"``/``"-inf"``
        (:func:`nplearn.io.to_jsonable`)."""
        toys_ok = [t for t in self.toys if t.ok]
        summary = {
            "n_requested": len(self.toys),
            "n_ok": len(toys_ok),
            "n_failed": self.n_failed_toys,
            "n_not_converged": self.n_not_converged,
            "median_time_s": float(np.median([t.time for t in toys_ok])) if toys_ok else None,
            "median_newton_iter": float(np.median([t.n_iter for t in toys_ok])) if toys_ok
            else None,
            "median_rank": float(np.median([t.rank for t in toys_ok])) if toys_ok else None,
            "max_suboptimality": float(max(t.suboptimality for t in toys_ok)) if toys_ok
            else None,
        }
        return {
            "format": "nplearn-result/1",
            "t_obs": self.t_obs,
            "n_w": self.n_w,
            "p_value": self.p_value,
            "z": self.z,
            "z_method": self.reported_method,
            "p_is_bound": self.p_is_bound,
            "reported": self.reported,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "n_data": self.n_data,
            "n_ref": self.n_ref,
            "expected": self.expected,
            "t_null": self.t_null.tolist(),
            # each toy's probed f is summarised by f_envelope (records keep it)
            "toys": [{k: v for k, v in t.to_dict().items() if k != "f_probe"}
                     for t in self.toys],
            "toy_summary": summary,
            "hyperparameters": self.hyperparameters,
            "fit": self.fit,
            "config": self.config.to_dict(),
            "timings": self.timings,
            "provenance": self.provenance,
            "widths": self.widths,
            "combinations": ({k: v.to_dict() for k, v in self.combinations.items()}
                             if self.combinations else None),
            "t_null_widths": (self.t_null_widths.tolist() if self.t_null_widths is not None
                              else None),
            "run": self.run,
            "combined_bound": self.combined_bound,
            "data_outside_reference": self.data_outside_reference,
            "reference_weights": self.reference_weights,
            "f_envelope": self.f_envelope,
            "combination_errors": self.combination_errors,
        }

    def f(self, events: Any, width: int | None = None) -> np.ndarray:
        """The learned log density ratio ``f(x) = log n_data(x)/n_ref(x)`` of the
        observed fit at ``events`` given in the units of the inputs: they are
        standardised as the fitted events were.

        Parameters
        ----------
        events : array-like, shape (n, d)
            Events with the features of the reference, in its units.
        width : int, optional
            Multi-width runs: the index of the kernel width (default the first; the
            most significant is :func:`nplearn.plots.most_significant_width`).

        Returns
        -------
        numpy.ndarray, shape (n,)
        """
        learner = self.learner
        if width is not None:
            if not self.width_learners or not 0 <= int(width) < len(self.width_learners):
                raise InputError(f"width {width!r}: this result has "
                                 f"{len(self.width_learners or [])} kernel widths with fits")
            learner = self.width_learners[int(width)]
        if learner is None:
            raise InputError("this result holds no fitted learner (e.g. one rebuilt from "
                             "a JSON file): refit with nplm_test(..., n_toys=0)")
        std = self.hyperparameters.get("standardizer") or {}
        mean = np.asarray(std.get("mean", 0.0), dtype=np.float64)
        scale = np.asarray(std.get("scale", 1.0), dtype=np.float64)
        x = as_events(events, "events", n_features=mean.size if mean.ndim else None)
        return np.asarray(learner.decision_function((x - mean) / scale))

    def save_json(self, path: str) -> None:
        """Write :meth:`to_dict` as JSON with sorted keys, atomically."""
        write_json_atomic(path, self.to_dict())

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        hp = self.hyperparameters
        neural = hp.get("learner") == "neural"
        if neural:
            learner_lines = [
                f"  learner                   neural network {hp['architecture']} "
                f"({hp['activation']}), {hp['n_params']} parameters",
                f"  weight clip               {hp['weight_clip']:g} "
                f"({hp['weight_clip_source']}); {self.fit['at_clip']} weights at the "
                "clip after the observed fit",
                f"  normalisation             {hp['normalisation'].split(':')[0]}",
                f"  training                  {hp['optimizer']}"
                + (f", {hp['epochs']} epochs, lr {hp['lr']:g}" if hp["optimizer"] == "adam"
                   else f", at most {hp['epochs']} iterations")
                + f"; best of {hp['n_init']} start(s) per fit",
                f"  observed fit              {self.fit['n_iter']} "
                + ("epochs" if hp["optimizer"] == "adam" else "iterations") + ", "
                + ("converged" if self.fit["converged"] else "NOT converged")
                + f", {self.fit['time_total']:.2f} s"
                + (", t of the starts " + ", ".join(f"{x:.2f}" for x in self.fit["start_t"])
                   if len(self.fit.get("start_t", ())) > 1 else ""),
            ]
        else:
            learner_lines = [
                f"  kernel width sigma        {hp['sigma']:.4g} ({hp['sigma_source']})",
                f"  centres M / kept rank r   {self._centres_used()} / {self.fit['rank']} "
                f"({hp.get('centers', 'per-fit')})",
                f"  normalisation             {hp['normalisation'].split(':')[0]}",
                f"  penalty lambda            {hp['lam']:.3g}",
                f"  schedule                  {self.config.schedule}",
                f"  observed fit              {self.fit['n_iter']} Newton steps, "
                f"{'converged' if self.fit['converged'] else 'NOT converged'}, "
                f"{self.fit['time_total']:.2f} s",
            ]
        lines = [
            f"NPLM goodness-of-fit test (nplearn {__version__})",
            f"  reference events N_R      {self.n_ref}",
            f"  data events N_D           {self.n_data}",
            (f"  expected yield N(R)       {self.expected:.6g}"
             if self.config.expected is not None else
             f"  expected yield N(R)       none: shape-only (N_D = {self.n_data} used)"),
            *learner_lines,
            f"  t_obs                     {self.t_obs:.4f}",
            f"  N_w (fitted yield)        {self.n_w:.2f}",
        ]
        out = self.data_outside_reference
        if out and out["n_events"]:
            names = self._feature_names(len(out["below"]))
            where = "; ".join(f"{names[k]}: {b} below, {a} above" for k, (b, a)
                              in enumerate(zip(out["below"], out["above"], strict=True))
                              if a or b)
            note = ("the network can raise f on them without bound: check the largest null "
                    "t" if neural else "the kernel's f there is bounded by the penalty "
                    "lambda only, and a small lambda lets it grow")
            chance = out.get("p_chance")
            # as many beyond the reference is common for data drawn like it (comparable
            # sample sizes): a note then, a warning when chance hardly explains it
            level = "NOTE" if chance is not None and chance >= OUTSIDE_WARN_P else "WARNING"
            odds = ("" if chance is None else
                    f"; as many by chance in up to {100 * chance:.3g}% of data sets drawn "
                    "like the reference" if chance >= OUTSIDE_WARN_P else
                    f"; chance for data drawn like the reference at most {chance:.2g}")
            extra_lines = [f"  {level}: {out['n_events']} data event(s) outside the "
                           f"reference's range ({where}{odds}); no reference event "
                           f"constrains f there ({note})"]
        else:
            extra_lines = []
        rw = self.reference_weights
        if rw:
            if rw["resampling_approximate"]:
                extra_lines.append(
                    f"  WARNING: N(R) = {self.expected:.6g} is not small against the "
                    f"reference weights' effective sample size "
                    f"{rw['effective_sample_size']:.0f}, or the heaviest event is expected "
                    f"{rw.get('max_inclusion', float('nan')):.2g} times in the pseudo-data: "
                    "toys resampled from the reference only approximate pseudo-data (use "
                    "more reference events or a toy generator)")
        negative = ([f"{w['sigma']:.3g}" for w in self.widths if w["t_obs"] < 0]
                    if self.widths else (["-"] if self.t_obs < 0 else []))
        if negative and neural:
            extra_lines.append(
                "  NOTE: t_obs < 0: the network ended below f = 0 on the loss it minimises "
                "(t = -2 L); check that its fit converged")
        elif negative:
            where = "" if negative == ["-"] else f" at sigma = {', '.join(negative)}"
            extra_lines.append(
                f"  NOTE: t_obs < 0{where}: the logistic fit scores below f = 0 on the "
                "extended likelihood, usually through a large f where reference events are "
                "sparse (README, 'Negative t'); toys fitted the same way calibrate it")
        extra_lines += self._normalisation_notes()
        full = self._full_rank_widths()
        if full:
            where = "" if full == ["-"] else f" at sigma = {', '.join(full)}"
            extra_lines.append(
                f"  NOTE: kept rank r close to M = {self._centres()[0]}{where}: "
                "(nearly) every centre is used, so the number of centres, not the width, "
                "limits the fit there, and it may follow the data's fluctuations; more "
                "centres (--centers, n_centers) can change t and the power (the toys "
                "calibrate whatever M is used)")
        c = self.calibration
        if self.widths:
            lines[4] = (f"  kernel widths sigma       {len(self.widths)}: "
                        + ", ".join(f"{w['sigma']:.3g}" for w in self.widths))
            lines[5] = (f"  centres M / kept rank r   {self._centres_used()} / "
                        + ", ".join(str(w["fit"]["rank"]) for w in self.widths)
                        + f" ({hp.get('centers', 'per-fit')})")
            bad = [w for w in self.widths if not w["fit"]["converged"]]
            steps = ", ".join(str(w["fit"]["n_iter"]) for w in self.widths)
            lines[9] = (f"  observed fits             {steps} Newton steps, "
                        + ("converged at every width" if not bad else
                           "NOT converged at sigma = "
                           + ", ".join(f"{w['sigma']:.3g}" for w in bad))
                        + f", {sum(w['fit']['time_total'] for w in self.widths):.2f} s")
            lines[-2] = ("  t_obs (first width)       " + f"{self.t_obs:.4f}")
            lines[-1] = ("  N_w (first width)         " + f"{self.n_w:.2f}")
        if rw:  # after the fixed positions above
            lines.insert(4, f"  reference weights         effective sample size "
                            f"{rw['effective_sample_size']:.0f} of {rw['n_events']} events")
        units = self._width_in_input_units()
        if units:
            lines.insert(6 if rw else 5, units)
        if c is None:
            lines.append("  no toys run: no p-value (n_toys or --toys > 0 runs them)")
        elif self.widths and not self.combinations:
            lines.append(f"  null toys                 {c.n_toys} ok: too few to combine the "
                         f"widths (at least 3 needed); no p-value reported")
        elif self.widths and self.combinations:
            lines += [
                f"  null toys                 {c.n_toys} ok{self._not_converged_note()}"
                + (f", {self.n_failed_toys} failed" if self.n_failed_toys else ""),
                "  per width:     sigma        t_obs   chi2 dof   local p (toys)  Z (toys)"
                "   local p and Z reported (method)",
            ]
            for w in self.widths:
                wc = w["calibration"]
                lines.append(f"  {w['sigma']:>20.4g} {w['t_obs']:>12.3f} {wc['chi2_dof']:>10.2f} "
                             f"{wc['p_empirical']:>16.4g} {wc['z_empirical']:>9.2f}"
                             + ("*" if wc["n_exceed"] == 0 else " ")
                             + f"  {_p_text(wc['p_value'])}, Z = {wc['z']:.2f} "
                             f"({wc['method']})")
            if any(w["calibration"]["n_exceed"] == 0 for w in self.widths):
                lines.append("  (* a bound: no toy reached t_obs)")
            lines.append("  combined (calibrated on the toys):")
            for m, cr in self.combinations.items():
                lines.append(f"  {m:>20s}  statistic {cr.statistic:8.3f}   p = {cr.p_value:.4g}"
                             f"   Z = {cr.z:.2f}" + ("  (bound: no toy reached it)"
                                                    if cr.n_exceed == 0 else ""))
            lines.append("  reported                  " + self._reported(
                f"{self.config.combine} over {len(self.widths)} widths"))
            cr = self.combinations.get(self.config.combine)
            if self.n_failed_toys and cr is not None:
                lines.append(f"  conservative p            {cr.p_conservative:.4g} (counting the "
                             f"{self.n_failed_toys} failed toys as reaching the data; the "
                             "p-values above ignore them)")
            b = self.combined_bound
            if b is not None:
                src = ("its chi2 extrapolation: trust it as far as that width's chi2 fit"
                       if b["local_method"] == "chi2" else "its toy p-value")
                wcal = self.widths[b["width_index"]]["calibration"]
                bound = b["local_method"] == "empirical" and wcal["n_exceed"] == 0
                src += ", a bound: no toy reached t_obs" if bound else ""
                lines.append(
                    f"  Bonferroni over widths    p {'<=' if bound else '='} "
                    f"{_p_text(b['p_value'])}, Z {'>=' if bound else '='} {b['z']:.2f} "
                    f"({b['n_widths']} x the smallest reported local p, at sigma = "
                    f"{self.widths[b['width_index']]['sigma']:.4g}, from {src}"
                    + (f"; the {self.n_failed_toys} failed toys are not counted)"
                       if self.n_failed_toys else ")"))
        else:
            fitted = math.isfinite(c.chi2_dof)
            neg = self.t_null[self.t_null < 0]
            lines += [
                f"  null toys                 {c.n_toys} ok{self._not_converged_note()}"
                + (f", {self.n_failed_toys} failed (conservative p counting them: "
                   f"{c.p_conservative:.4g})" if self.n_failed_toys else "")
                + (f"; {neg.size} with t < 0 (down to {neg.min():.4g}; they count in both "
                   "p-values)" if neg.size else ""),
                (f"  chi2 fit of the null      dof = {c.chi2_dof:.2f} "
                 f"(KS distance {c.chi2_ks_distance:.3f})"
                 + (f"; the network has {hp['n_params']} parameters (a well-chosen weight "
                    "clip brings the two close)" if neural else "")
                 if fitted else
                 "  chi2 fit of the null      none (too few toys)"),
                f"  toys with t >= t_obs      {c.n_exceed}",
                (f"  p (toys)                  <= {c.p_empirical:.4g}   Z >= "
                 f"{c.z_empirical:.2f}  (bound: none of the {c.n_toys} toys reached t_obs)"
                 if c.n_exceed == 0 else
                 f"  p (toys)                  {c.p_empirical:.4g}   Z = "
                 f"{c.z_empirical + 0.0:.2f}  (68% interval {c.p_empirical_interval[0]:.2g}"
                 f"-{c.p_empirical_interval[1]:.2g})"),
            ]
            if fitted:
                top = float(self.t_null.max()) if self.t_null.size else math.nan
                why = c.chi2_unused
                lines.append(
                    f"  p (chi2 extrapolation)    {_p_text(c.p_chi2)}   Z = {c.z_chi2:.2f}"
                    + ("  (poor chi2 fit: KS p < 0.01, do not trust)"
                       if why.startswith("poor") else
                       f"  (not reported: fitted to {why})" if why.startswith("fewer") else
                       f"  (not reported: {why})" if why.startswith(("the toys", "not below"))
                       else
                       f"  (beyond every toy: the largest is {top:.4g})"
                       if not why and c.n_exceed == 0 and math.isfinite(top) else ""))
            lines.append("  reported                  " + self._reported(
                c.method if c.method != "chi2" else
                f"chi2 extrapolation beyond all {c.n_toys} toys" if c.n_exceed == 0 else
                f"chi2 tail; {c.n_exceed} of {c.n_toys} toys reach t_obs"))
        lines.append(f"  wall time                 {self.timings['total']:.1f} s")
        return "\n".join(lines + extra_lines)

    def _feature_names(self, d: int) -> list[str]:
        """Names of the ``d`` features: the columns as read by the command line (header
        names where the file has them), else ``x0``, ``x1``, ..."""
        inputs = self.provenance.get("inputs") if isinstance(self.provenance, dict) else None
        cols = ((inputs or {}).get("reference") or {}).get("columns")
        if isinstance(cols, list) and len(cols) == d:
            return [str(c) for c in cols]
        return [f"x{k}" for k in range(d)]

    def _normalisation_notes(self) -> list[str]:
        """NOTEs on the event count: far from N(R) (the count alone then makes ``t``
        large: a wrong --expected, e.g. not scaled to a --selection, looks like a
        discovery); or not tested at all (shape-only with weights that may say
        otherwise)."""
        rw = self.reference_weights
        if self.config.expected is None:
            if rw and "sum" in rw:
                return [f"  NOTE: shape-only: the normalisation is not tested (the reference "
                        f"weights sum to {rw['sum']:.6g}, the data have {self.n_data} "
                        "events); give the expected yield (--expected) to test it"]
            return []
        n_r = float(self.expected)
        z = (self.n_data - n_r) / math.sqrt(n_r) if n_r > 0 else 0.0
        if abs(z) < NORMALISATION_NOTE_Z:
            return []
        return [f"  NOTE: N_D = {self.n_data} is {z:+.1f} Poisson standard deviations from "
                f"N(R) = {n_r:.6g}: the event count alone makes t large; check that N(R) is "
                "the yield of these events (after any selection)"]

    def _centres(self) -> tuple[Any, Any]:
        """(M of the observed fit, M asked for): fewer are used when the fit has fewer
        events, every event then being a centre."""
        asked = self.hyperparameters.get("n_centers")
        used = (self.widths[0]["fit"] if self.widths else self.fit).get("n_centers") or asked
        return used, asked

    def _centres_used(self) -> str:
        """M of the observed fit as the summary gives it."""
        used, asked = self._centres()
        return str(used) if used == asked else f"{used} (every event; {asked} asked)"

    def _full_rank_widths(self) -> list[str]:
        """Kernel widths whose observed fit kept (nearly) every centre (rank r at least
        :data:`RANK_NOTE_FRACTION` M): ``["-"]`` for a single-width test, the widths as
        text for several, empty otherwise."""
        m, asked = self._centres()
        if self.hyperparameters.get("learner") == "neural" or not m or m < (asked or 0):
            return []  # every event is a centre: the kernel itself, no limit from M
        near = RANK_NOTE_FRACTION * m
        if self.widths:
            return [f"{w['sigma']:.3g}" for w in self.widths if w["fit"].get("rank", 0) >= near]
        return ["-"] if self.fit.get("rank", 0) >= near else []

    def _width_in_input_units(self) -> str | None:
        """Summary line: a single kernel width in each feature's own units (sigma
        times the reference's standard deviation of the feature), which says what
        size of structure the test is most sensitive to."""
        hp = self.hyperparameters
        if hp.get("learner") == "neural" or not hp.get("standardized"):
            return None
        scale = (hp.get("standardizer") or {}).get("scale")
        if self.widths:  # every width, feature by feature (a few features only)
            sig = [float(w["sigma"]) for w in self.widths]
            if not scale or len(scale) > 3:
                return None
            names = self._feature_names(len(scale))
            return ("  sigma in input units      "
                    + "; ".join(f"{n} " + ", ".join(f"{s * float(sc):.3g}" for s in sig)
                                for n, sc in zip(names, scale, strict=True))
                    + " (sigma x reference std)")
        if not scale or len(scale) > 6 or not math.isfinite(float(hp.get("sigma", math.nan))):
            return None
        names = self._feature_names(len(scale))
        return ("  sigma in input units      "
                + ", ".join(f"{n} {hp['sigma'] * float(sc):.4g}"
                            for n, sc in zip(names, scale, strict=True))
                + " (sigma x reference std)")

    def _reported(self, method: str) -> str:
        """``p = ..., Z = ... (method)`` of the reported result, written as bounds
        when no toy reached the data (``p <= ..., Z >= ...``)."""
        z = self.z + 0.0  # no "-0.00"
        if math.isnan(self.p_value):
            why = (self.combination_errors or {}).get(self.config.combine, "")
            return f"p = nan ({method}: not computed" + (f": {why})" if why else ")")
        if self.p_is_bound:
            return (f"p <= {self.p_value:.4g}, Z >= {z:.2f} ({method}; a bound: no toy "
                    "reached the data)")
        if self.p_value >= 1.0:  # Z = -inf: no sign of a discrepancy at all
            return (f"p = 1, Z = -inf ({method}; every toy reached t_obs: no sign of a "
                    "discrepancy)")
        return f"p = {_p_text(self.p_value)}, Z = {z:.2f} ({method})"

    def _not_converged_note(self) -> str:
        n = self.n_not_converged
        hp = self.hyperparameters
        what = ("max_iter / tol" if hp.get("learner") != "neural" else
                "nn_epochs / nn_tol" if hp.get("optimizer") == "adam" else
                "nn_epochs, or the network's size against the data")
        return f" ({n} not converged: check {what})" if n else ""


def _p_text(p: float) -> str:
    """A p-value for the summary: ``0`` (a chi-square tail below float64's range) as
    ``< 1e-300``."""
    return "< 1e-300" if p == 0.0 else f"{p:.4g}"


def _input_digest(a: np.ndarray | None) -> dict[str, Any] | None:
    """SHA-256 of an input array as the test received it (dtype, shape and bytes, the
    digest the checkpoint fingerprint uses)."""
    if a is None:
        return None
    from .checkpoint import _array_digest

    h = hashlib.sha256()
    _array_digest(h, a)
    return {"sha256": h.hexdigest(), "shape": list(a.shape)}


def _toy_method(toy_generator: ToyGenerator | None, *, shape_only: bool) -> dict[str, Any]:
    """How the null toys were made, for the provenance of a result."""
    if toy_generator is None:
        events = "exactly N_D" if shape_only else "Poisson(N(R))"
        return {"method": f"resampled from the reference ({events} pseudo-data events "
                          "drawn without replacement, the rest as the toy's reference)"}
    from .checkpoint import _source_target, generator_source_digest

    target = _source_target(toy_generator)
    return {"method": "toy generator",
            "generator": f"{target.__module__}.{target.__qualname__}",
            "generator_source_sha256": generator_source_digest(toy_generator)}


def _as_inputs(reference: Any, data: Any, ref_weights: Any
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    check_same_columns(reference, data)
    ref = as_events(reference, "reference")
    # no data event at all is a result when a yield is expected (a monitoring block
    # whose detector was off); a shape-only test refuses it below (N(R) = N_D = 0)
    dat = as_events(data, "data", n_features=ref.shape[1], allow_empty=True)
    rel = None if ref_weights is None else as_weights(ref_weights, ref.shape[0],
                                                      "reference weights")
    return ref, dat, rel


def input_array_digests(reference: Any, data: Any, ref_weights: Any = None
                        ) -> dict[str, dict[str, Any] | None]:
    """SHA-256 of the events and weights as :func:`nplm_test` receives them: what a
    result records as ``provenance["input_arrays"]``. They identify the events tested,
    whatever file they were read from (a container may change elsewhere).

    Returns
    -------
    dict
        ``{"reference": ..., "data": ..., "ref_weights": ...}``, each ``{"sha256",
        "shape"}`` or None (no weights).
    """
    return _digests(*_as_inputs(reference, data, ref_weights))


def _digests(ref: np.ndarray, dat: np.ndarray, rel: np.ndarray | None
             ) -> dict[str, dict[str, Any] | None]:
    return {"reference": _input_digest(ref), "data": _input_digest(dat),
            "ref_weights": _input_digest(rel)}


def _prepare(
    reference: Any, data: Any, ref_weights: Any, cfg: NPLMConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Standardizer, dict[str, Any],
           float | None]:
    ref, dat, rel = _as_inputs(reference, data, ref_weights)
    digests = _digests(ref, dat, rel)
    weights_sum = None
    if rel is not None:
        # only ratios of weights matter: on the scale of the largest, sums neither
        # overflow (1e305) nor underflow (1e-310); their sum as given is kept
        top = float(rel.max())
        rel = rel / top
        with np.errstate(over="ignore"):
            weights_sum = float(np.float64(top) * rel.sum())
    if rel is not None and np.ptp(rel) <= 1e-12:
        rel = None  # all equal: the uniform case
    std = Standardizer.fit(ref, rel) if cfg.standardize else Standardizer.identity(ref.shape[1])
    ref_s, dat_s = std.transform(ref), std.transform(dat)
    for name, x in (("reference", ref_s), ("data", dat_s)):
        # squared distances of such values overflow float64
        big = np.abs(x).max(axis=0, initial=0.0) > 1e150
        if big.any():
            where = ("beyond 1e150 reference standard deviations from the reference mean"
                     if cfg.standardize else "beyond 1e150 in absolute value")
            raise InputError(
                f"{name} feature(s) {', '.join(map(str, np.flatnonzero(big)[:10]))} hold "
                f"values {where}: their distances overflow float64 (rescale the inputs or "
                "check for corrupted values)")
    return ref_s, dat_s, rel, std, digests, weights_sum


def _resolve_config(config: NPLMConfig | dict[str, Any] | None) -> NPLMConfig:
    """The options of a run: an :class:`NPLMConfig` (checked again: its fields may
    have been changed after it was made), a dict of its fields, or the defaults."""
    if config is None:
        return NPLMConfig()
    if isinstance(config, dict):
        return NPLMConfig.from_dict(config)
    if not isinstance(config, NPLMConfig):
        raise InputError(f"config must be an NPLMConfig or a dict of its fields, got "
                         f"{type(config).__name__}")
    config.validate()
    return config


def nplm_test(
    reference: Any,
    data: Any,
    config: NPLMConfig | None = None,
    *,
    ref_weights: Any = None,
    toy_generator: ToyGenerator | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint: Any = None,
    resume_only: bool = False,
    executor: Any = None,
    **options: Any,
) -> NPLMResult:
    """Run the NPLM goodness-of-fit test of ``data`` against ``reference``.

    Learns ``f = log n_data / n_ref`` with Nyström kernel logistic regression (or,
    with ``learner="neural"``, the NPLM neural network), computes ``t``, runs
    ``config.n_toys`` null toys with the identical procedure and returns p-values
    and Z (from the toys and from a chi-square fit of them).

    Parameters
    ----------
    reference : array-like, shape (N_R, d)
        Events of the reference model (e.g. Standard Model simulation).
    data : array-like, shape (N_D, d)
        Observed events.
    config : NPLMConfig, optional
        Options; keyword ``options`` override its fields
        (e.g. ``nplm_test(ref, data, n_toys=300, lam=1e-10)``).
    ref_weights : array-like, shape (N_R,), optional
        Relative per-event reference weights (e.g. Monte Carlo weights). They are
        rescaled to sum to ``N(R)``. Default uniform ``N(R)/N_R``.
    toy_generator : callable, optional
        ``gen(rng) -> data | (reference, data) | (reference, data, weights)``
        drawing raw events of one null toy from the numpy Generator it is given.
        Default: resample toys from the reference (``Poisson(N(R))`` events drawn
        without replacement as pseudo-data, the rest as the toy's reference). It
        must be defined at module level to run in worker processes.
    progress : callable, optional
        ``progress(done, total)`` called as toys finish.
    checkpoint : str or Path, optional
        Folder where every finished toy is recorded at once; a rerun of the same
        test (same inputs, options and seed) skips the toys already recorded, so
        an interrupted calibration resumes where it stopped with identical
        results (:mod:`nplearn.checkpoint`).
    resume_only : bool
        With ``checkpoint``: take every toy from the records (e.g. shards run by
        :func:`nplm_toys` on a batch farm) and fail if one is missing.
    executor : concurrent.futures.Executor or distributed.Client, optional
        Run the toys as tasks of this executor (a Dask cluster, with failed tasks
        retried, or any ``concurrent.futures``-style executor); results are
        identical to a local run.

    Returns
    -------
    NPLMResult
    """
    t_start = time.perf_counter()
    cfg = _resolve_config(config)
    if options:
        cfg = cfg.replace(**options)
    S = _setup(reference, data, ref_weights, cfg, toy_generator, executor)
    ref, dat, n_ref, n_data = S["ref"], S["dat"], S["n_ref"], S["n_data"]
    expected, w_ref, params, hyper = S["expected"], S["w_ref"], S["params"], S["hyper"]
    widths, sources, n_centers, shared = S["widths"], S["sources"], S["n_centers"], S["shared"]

    if checkpoint is not None and not resume_only:
        from .checkpoint import check_checkpoint_folder

        check_checkpoint_folder(checkpoint)  # not only after the observed fit
    # observed fit (every width on the same data, with the same centres)
    t0 = time.perf_counter()
    if shared:
        # events of weight zero are never drawn as pseudo-data either
        n_usable = n_ref if S["rel"] is None else int(np.count_nonzero(S["rel"] > 0))
        if n_usable - int(n_centers) < MIN_POOL_RATIO * expected:
            raise InputError(
                f"centers='shared' keeps the {int(n_centers)} centre events out of the "
                f"pseudo-data, leaving at most {n_usable - int(n_centers)} of {n_ref} "
                "reference events" + ("" if S["rel"] is None else " of non-zero weight")
                + f": fewer than {MIN_POOL_RATIO:g} x N(R) = {MIN_POOL_RATIO * expected:g}; "
                "use fewer centres or more reference events"
            )
    bases = {}

    def fit_one(s: float, f0: np.ndarray | None) -> Any:
        lw = KernelLogisticRegression(**width_learner_params(params, s, len(widths), shared))
        if shared:
            # built with the toys' thread count so that workers rebuild it bit for bit
            with torch_threads(cfg.threads_per_worker or 1):
                bases[s] = shared_basis(ref, lw, cfg.seed)
            res = nplm_fit_shared(ref, dat, w_ref, lw, bases[s], f0)
        else:
            res = nplm_fit(ref, dat, w_ref, lw, observed_seed(cfg.seed), f0)
        t_s, _, info_s, _ = res
        if not np.isfinite(t_s):
            raise InputError(f"the observed fit at sigma = {s:g} gave a non-finite statistic "
                             f"({info_s.message})")
        log.info("observed t = %.4f at sigma = %.4g (%s)", t_s, s, info_s.message)
        return res

    # (t, n_w, info, learner) per width, in the order of the widths
    # (the toys' default, ToyEngine.warm_start, is the same constant)
    with torch_threads(cfg.threads_per_worker or 1):  # the toys' arithmetic
        if cfg.neural:
            try:
                observed = [nplm_fit(ref, dat, w_ref, make_learner(params),
                                     observed_seed(cfg.seed))]
            except FloatingPointError as exc:
                raise NplearnError(f"the observed fit of the network failed ({exc}); try a "
                                   "smaller nn_weight_clip or nn_lr") from None
            if not np.isfinite(observed[0][0]):
                raise InputError("the observed fit gave a non-finite statistic "
                                 f"({observed[0][2].message})")
            log.info("observed t = %.4f (%s)", observed[0][0], observed[0][2].message)
        else:
            observed = fit_widths(widths, fit_one, WARM_START_WIDTHS)
    if str(params["device"]).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()  # toy workers on this GPU get the memory back
    t_obs, n_w, info, learner = observed[0]
    t_fit = time.perf_counter() - t0

    # toys
    engine = _make_engine(S, cfg, toy_generator, bases)
    execution: dict[str, Any] = {}
    t1 = time.perf_counter()
    toys = run_toys(engine, range(cfg.n_toys), workers=cfg.workers,
                    threads_per_worker=cfg.threads_per_worker, progress=progress,
                    checkpoint=checkpoint, resume_only=resume_only, executor=executor,
                    report=execution)
    t_toys = time.perf_counter() - t1
    combo_errors: dict[str, str] = {}
    t_null = np.array([t.t for t in toys if t.ok], dtype=np.float64)
    n_failed = sum(not t.ok for t in toys)
    if toys and not t_null.size:
        raise NplearnError(f"all {len(toys)} toys failed; the first: {toys[0].message}")
    if n_failed:
        log.warning("%d of %d toys failed and were excluded (the conservative p-value "
                    "counts them as exceeding t_obs)", n_failed, len(toys))
    cal = calibrate(t_obs, t_null, min_exceed=cfg.min_exceed,
                    n_failed=n_failed) if t_null.size else None
    p_value, z = (cal.p_value, cal.z) if cal else (float("nan"), float("nan"))
    width_info = combos = t_null_widths = bound = None
    if cfg.multi_width:
        t_null_widths = np.array([t.t_widths for t in toys if t.ok],
                                 dtype=np.float64).reshape(-1, len(widths))
        width_info = []
        for k, (s, src) in enumerate(zip(widths, sources, strict=True)):
            t_k, n_w_k, info_k, _ = observed[k]
            cal_k = calibrate(t_k, t_null_widths[:, k], min_exceed=cfg.min_exceed,
                              n_failed=n_failed) if t_null.size else None
            width_info.append({"sigma": s, "sigma_source": src, "t_obs": t_k, "n_w": n_w_k,
                               "fit": info_k.to_dict(),
                               "calibration": cal_k.to_dict() if cal_k else None})
        if t_null_widths.shape[0] >= 3:
            t_obs_w = np.array([o[0] for o in observed])
            combos = {}
            for m in COMBINATIONS:
                try:
                    combos.update(combine_all(t_obs_w, t_null_widths, (m,), cfg.temperature))
                except InputError as exc:
                    # never raised: the toys are spent, and the widths' own p-values
                    # and the other combinations are still worth the result
                    combo_errors[m] = str(exc)
                    log.warning("combination %s not computed: %s%s", m, exc,
                                "; it is the reported one (--combine): p and Z are NaN"
                                if m == cfg.combine else "")
            if n_failed:
                combos = {m: dataclasses.replace(cr, n_failed=n_failed,
                                                 p_conservative=math.nan)
                          for m, cr in combos.items()}
            chosen = combos.get(cfg.combine)
            p_value, z = (chosen.p_value, chosen.z) if chosen else (math.nan, math.nan)
            cals = [w["calibration"] for w in width_info]
            if all(c is not None and 0 <= c["p_value"] <= 1 for c in cals):
                bound = bonferroni_bound([c["p_value"] for c in cals],
                                         [c["method"] for c in cals],
                                         [c["z"] for c in cals])
        elif t_null.size:
            log.warning("fewer than 3 successful toys: no combined p-value")
            p_value = z = float("nan")
    f_env = None
    probed = [decode_values(t.f_probe, len(t.t_widths)) for t in toys if t.ok and t.f_probe]
    if engine.probe is not None and probed:
        f_env = envelope(engine.probe, np.array(probed), S["std"].mean, S["std"].scale,
                         observed=np.array([probe_values(engine.probe, o[3])
                                            for o in observed]))
    prov = provenance()
    prov["workers"] = execution.get("workers", 0)
    prov["execution"] = {**execution, "memory_budget": params.get("memory_budget"),
                         "observed_fit_threads": cfg.threads_per_worker or 1,
                         "executor": None if executor is None else type(executor).__name__}
    prov["input_arrays"] = S["digests"]
    prov["toys"] = _toy_method(toy_generator, shape_only=S["shape_only"])
    return NPLMResult(
        t_obs=t_obs,
        n_w=n_w,
        p_value=p_value,
        z=z,
        calibration=cal,
        t_null=t_null,
        toys=toys,
        n_data=n_data,
        n_ref=n_ref,
        expected=expected,
        hyperparameters=hyper,
        fit=info.to_dict(),
        config=cfg,
        timings={"observed_fit": t_fit, "toys": t_toys, "total": time.perf_counter() - t_start,
                 "per_toy_median": float(np.median([t.time for t in toys])) if toys else 0.0},
        provenance=prov,
        learner=learner,
        width_learners=[o[3] for o in observed] if cfg.multi_width else None,
        widths=width_info,
        combinations=combos,
        t_null_widths=t_null_widths,
        combined_bound=bound,
        # reference events of zero weight constrain nothing
        data_outside_reference=outside_reference(ref[w_ref > 0], dat),
        reference_weights=S["weights_info"],
        f_envelope=f_env,
        combination_errors=combo_errors or None,
    )


#: Resampled toys of a weighted reference only approximate pseudo-data beyond these:
#: ``N(R)`` above this fraction of the effective sample size, or the heaviest event
#: expected this many times in the pseudo-data (drawn without replacement, it leaves the
#: toy's reference in nearly every toy: the toys' reference is then depleted there).
APPROXIMATE_ESS_FRACTION = 0.1
APPROXIMATE_MAX_INCLUSION = 0.3


def _weights_info(rel: np.ndarray | None, expected: float, resampled: bool,
                  total: float | None = None) -> dict[str, Any] | None:
    """Effective sample size of a weighted reference, the heaviest event's expected
    count in the pseudo-data (``max_inclusion = N(R) w_max / sum w``), and whether
    resampled toys then only approximate pseudo-data. ``rel`` is on the scale of its
    largest weight (:func:`_prepare`); ``total``: the weights' sum as given."""
    if rel is None:
        return None
    ess = float(rel.sum() ** 2 / (rel**2).sum())
    pi_max = float(expected / rel.sum())
    return {"n_events": int(rel.size), "effective_sample_size": ess,
            "sum": float(rel.sum()) if total is None else total,
            "max_inclusion": pi_max,
            "resampling_approximate": bool(resampled and (
                expected > APPROXIMATE_ESS_FRACTION * ess
                or pi_max > APPROXIMATE_MAX_INCLUSION))}


#: The summary notes a kept rank at least this fraction of the centres M.
RANK_NOTE_FRACTION = 0.9

#: The summary notes an event count this many Poisson standard deviations from N(R).
NORMALISATION_NOTE_Z = 5.0

#: Below this chance (``outside_reference``'s ``p_chance``) data beyond the reference
#: are a WARNING of the summary, above it a NOTE.
OUTSIDE_WARN_P = 0.01


def outside_reference(reference: np.ndarray, data: np.ndarray) -> dict[str, Any]:
    """Data events that lie beyond the reference's range in some feature.

    No reference event constrains ``f`` there: the loss rewards a large ``f`` on such an
    event and nothing penalises it. A smooth kernel's ``f`` stays bounded, but the
    network's saturating units can raise it freely (on the 1D benchmark, toys whose
    largest data event lay beyond the reference reached t = 47.7 and 58.5, far in the
    null's tail; BENCHMARKS.md). Under the null they are not rare with comparable
    sample sizes: when data and reference are drawn from one density, ``k`` or more
    data events lie beyond the reference's largest event of a feature with
    probability ``C(N_D, k) / C(N_D + N_R, k) ~ (N_D / (N_D + N_R))^k``, so about
    ``2 d N_D / (N_D + N_R)`` of the data sets have one.

    Returns
    -------
    dict
        ``n_events`` (data events outside the range in at least one feature), per
        feature ``below`` and ``above`` (counts), and ``p_chance``: the probability
        that some end of some feature holds as many data events beyond the reference
        as the fullest end here, for data drawn like an unweighted reference (a union
        bound over the ``2 d`` ends; 1 when there are none).
    """
    lo, hi = reference.min(axis=0), reference.max(axis=0)
    below, above = data < lo, data > hi
    n_d, n_r = data.shape[0], reference.shape[0]
    k = int(max(below.sum(axis=0).max(), above.sum(axis=0).max()))
    # P(an end holds >= k data events beyond every reference event) = C(N_D, k) /
    # C(N_D + N_R, k), at most 2 d times that for some end
    p_chance = 1.0 if k == 0 else min(1.0, 2 * data.shape[1] * math.exp(
        math.lgamma(n_d + 1) - math.lgamma(n_d - k + 1)
        - math.lgamma(n_d + n_r + 1) + math.lgamma(n_d + n_r - k + 1)))
    return {"n_events": int((below | above).any(axis=1).sum()),
            "below": below.sum(axis=0).astype(int).tolist(),
            "above": above.sum(axis=0).astype(int).tolist(),
            "p_chance": float(p_chance)}


def nplm_toys(
    reference: Any,
    data: Any,
    config: NPLMConfig | None = None,
    *,
    indices: Any,
    out: Any,
    ref_weights: Any = None,
    toy_generator: ToyGenerator | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> list[ToyResult]:
    """Run some null toys of a test and record them (a shard of a calibration).

    The toys are exactly those :func:`nplm_test` runs with the same inputs and
    options (same fingerprint, same random streams); they are written to the
    checkpoint folder ``out``, where ``nplm_test(..., checkpoint=out,
    resume_only=True)`` (``nplearn merge``) collects them. No observed fit is
    made. Shards may run anywhere, in any order, any number of times.

    Parameters
    ----------
    reference, data, config, ref_weights, toy_generator, progress, options
        As for :func:`nplm_test`.
    indices : iterable of int
        Toy indices of this shard, e.g. ``range(1000, 2000)``.
    out : str or Path
        Checkpoint folder for the records.
    """
    cfg = _resolve_config(config)
    if options:
        cfg = cfg.replace(**options)
    S = _setup(reference, data, ref_weights, cfg, toy_generator)
    engine = _make_engine(S, cfg, toy_generator, {})
    return run_toys(engine, list(indices), workers=cfg.workers,
                    threads_per_worker=cfg.threads_per_worker, progress=progress,
                    checkpoint=out)


_SETUP_KEYS = ("ref", "dat", "rel", "std", "n_ref", "n_data", "shape_only", "expected",
               "w_ref", "device", "widths", "sources", "n_centers", "params", "hyper", "shared",
               "digests", "weights_info")


def _setup(reference: Any, data: Any, ref_weights: Any, cfg: NPLMConfig,
           toy_generator: ToyGenerator | None, executor: Any = None) -> dict[str, Any]:
    """Validated inputs and everything fixed before any fit (reference only)."""
    if toy_generator is not None and not callable(toy_generator):
        raise InputError(f"toy_generator must be callable, gen(rng) -> events; got "
                         f"{type(toy_generator).__name__}")
    ref, dat, rel, std, digests, weights_sum = _prepare(reference, data, ref_weights, cfg)
    n_ref, n_data = ref.shape[0], dat.shape[0]
    shape_only = cfg.expected is None
    expected = float(n_data) if shape_only else float(cfg.expected)
    if expected <= 0:
        raise InputError("the data hold no event: a shape-only test needs data events "
                         "(give the expected yield N(R) to test an empty data set)"
                         if shape_only else "the expected yield N(R) must be positive")
    w_ref = normalised_weights(n_ref, expected, rel)
    weights_info = _weights_info(rel, expected, toy_generator is None and cfg.n_toys > 0,
                                 weights_sum)
    device = str(resolve_device(cfg.device))  # "auto" -> the actual device, once
    normalisation = (
        ("shape-only: N(R) = N_D in every fit; " if shape_only else
         "extended: N(R) = expected; ")
        + ("toys from the toy generator (see provenance.toys)"
           if toy_generator is not None else
           "resampled toys have exactly N_D events" if shape_only else
           "resampled toys have Poisson(N(R)) events"))
    if cfg.neural:
        return _setup_neural(cfg, device, normalisation, locals())

    # hyperparameters from the reference only
    widths, sources = _resolve_widths(ref, cfg, rel)
    sigma, sigma_source = widths[0], sources[0]
    n_centers = cfg.n_centers if cfg.n_centers is not None else default_n_centers(n_ref + n_data)
    params = {**cfg.learner_params(), "sigma": sigma, "n_centers": int(n_centers),
              "device": device}
    # one memory budget for the observed fit and every toy, resolved once: it chooses
    # how features are stored, so the observed t is computed as the toys' are
    params["memory_budget"] = toy_memory_budget(params, cfg.workers, executor)
    hyper = {
        "sigma": sigma, "sigma_source": sigma_source, "n_centers": int(n_centers),
        "n_centers_source": "user" if cfg.n_centers is not None else "max(1000, 2 sqrt(n))",
        "lam": cfg.lam, "standardizer": std.to_dict(), "standardized": cfg.standardize,
        "normalisation": normalisation,
        "device": device,
    }

    shared = cfg.centers == "shared"
    if shared and toy_generator is not None:
        raise InputError("centers='shared' works with toys resampled from the reference; "
                         "it cannot be combined with a toy generator")
    hyper["centers"] = cfg.centers
    if cfg.multi_width:
        hyper["sigmas"] = widths
        hyper["sigma_sources"] = sources

    return {k: v for k, v in locals().items() if k in _SETUP_KEYS}


def _setup_neural(cfg: NPLMConfig, device: str, normalisation: str,
                  scope: dict[str, Any]) -> dict[str, Any]:
    """:func:`_setup` of the neural-network learner: the network's layers and clip
    resolved from the number of features (no kernel width, no centres)."""
    d = scope["ref"].shape[1]
    net = NeuralNetworkLearner(hidden=cfg.nn_hidden, weight_clip=cfg.nn_weight_clip)
    hidden, clip = net.resolved_hidden(d), net.resolved_weight_clip(d)
    params = {**cfg.learner_params(), "hidden": list(hidden), "weight_clip": clip,
              "device": device}
    hyper = {
        "learner": "neural",
        "architecture": "-".join(str(k) for k in (d, *hidden, 1)),
        "hidden": list(hidden), "activation": cfg.nn_activation,
        "n_params": n_parameters(d, hidden), "weight_clip": clip,
        "weight_clip_source": "user" if cfg.nn_weight_clip is not None else
        "published default (9 in 1D, 2.15 otherwise)",
        "optimizer": cfg.nn_optimizer, "epochs": params["epochs"],
        "lr": cfg.nn_lr if cfg.nn_optimizer == "adam" else None,
        "n_init": params["n_init"],
        "standardizer": scope["std"].to_dict(), "standardized": cfg.standardize,
        "normalisation": normalisation, "device": device,
    }
    out = {k: v for k, v in scope.items() if k in _SETUP_KEYS}
    out.update(device=device, widths=[], sources=[], n_centers=None, params=params,
               hyper=hyper, shared=False)
    return out


def _make_engine(S: dict[str, Any], cfg: NPLMConfig, toy_generator: ToyGenerator | None,
                 bases: dict[float, Any]) -> ToyEngine:
    """The toy definition of a test (identical for the observed fit's procedure)."""
    ref, rel, std, w_ref, params = S["ref"], S["rel"], S["std"], S["w_ref"], S["params"]
    n_ref, expected, shape_only = S["n_ref"], S["expected"], S["shape_only"]
    widths, shared = S["widths"], S["shared"]
    sigmas = tuple(widths) if cfg.multi_width else ()
    probe = make_probe(ref, rel)  # the null envelope of f (from the reference only)
    if toy_generator is None:
        # pseudo-data are drawn with probability proportional to the weight
        n_pool = n_ref if rel is None else int(np.count_nonzero(rel > 0))
        if n_pool < MIN_POOL_RATIO * expected:
            what = f"{n_ref} events" if rel is None else \
                f"{n_pool} of {n_ref} events with a non-zero weight"
            raise InputError(
                f"the reference sample ({what}) is too small to resample null toys "
                f"with N(R) = {expected:g} events: it must hold at least "
                f"{MIN_POOL_RATIO:g} x N(R); supply more reference events or a toy generator"
                + (f" (the data hold {S['n_data']} events: are the reference and the data "
                   "swapped?)" if S["n_data"] > n_ref else "")
            )
        engine = ToyEngine(params, expected, cfg.seed, pool=ref, pool_weights=rel,
                           shared_centers=shared, shape_only=shape_only, sigmas=sigmas,
                           probe=probe)
        for s, b in bases.items():
            engine._cache[("basis", s)] = b  # in-process toys reuse it
        info = S["weights_info"]
        if info is not None and info["resampling_approximate"] \
                and expected >= info["effective_sample_size"]:
            # the reference carries no more information than the data it is compared
            # with: the test would measure its own fluctuations (a heavy event is a
            # spike of its model), and resampled toys cannot hold its heavy events
            raise InputError(
                f"weighted reference: its effective sample size "
                f"{info['effective_sample_size']:.0f} (of the weights) is not above "
                f"N(R) = {expected:g}: the reference is statistically no larger than the "
                "data it is compared with, so the test would mostly see the reference's own "
                f"fluctuations (its heaviest event alone is {info['max_inclusion']:.3g} "
                "expected events), and toys resampled from it cannot reproduce its "
                "heavy events; use more reference events (or less extreme weights), or a "
                "toy generator of data from the physics the reference simulates")
        if info is not None and info["resampling_approximate"]:
            log.warning(
                "weighted reference: N(R) = %.0f is not small against the effective "
                "sample size %.0f of the weights, or the heaviest event is expected %.2g "
                "times in the pseudo-data; resampled toys are then only an approximation "
                "of pseudo-data (they under-represent the heavy events)", expected,
                info["effective_sample_size"], info["max_inclusion"])
    else:
        engine = ToyEngine(params, expected, cfg.seed, generator=toy_generator,
                           standardizer=std, reference=ref, reference_weights=w_ref,
                           shape_only=shape_only, sigmas=sigmas, probe=probe)
    return engine


def _ordinal(q: float) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``, ``90th``, ``2.5th``."""
    text = f"{q:g}"
    if float(q) != int(q):
        return text + "th"
    n = int(q)
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return text + suffix


def _resolve_widths(ref: np.ndarray, cfg: NPLMConfig,
                    rel: np.ndarray | None = None) -> tuple[list[float], list[str]]:
    """Kernel widths of the test and how each was chosen (reference only).

    Percentile widths all use the same random subsample of reference pairs (the
    stream ``SeedSequence(0, spawn_key=(2,))``, whatever the run's seed: the width,
    hence the statistic, depends on the reference only, and the seed on the toys
    only), so the 90th-percentile width of a multi-width run equals that of the
    single-width default. With reference
    weights ``rel`` they are percentiles of the weighted reference (pairs weighted
    by ``w_i w_j``, zero weights left out), as the standardisation is.
    """

    def from_percentile(q: float) -> float:
        rng = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(2,)))
        return sigma_from_percentile(ref, q, weights=rel, rng=rng)

    def label(q: float) -> str:
        return f"{_ordinal(q)} percentile of reference pairwise distances"

    if cfg.sigmas:
        return [float(s) for s in cfg.sigmas], ["user"] * len(cfg.sigmas)
    if cfg.sigma_percentiles:
        qs = list(cfg.sigma_percentiles)
        widths = [from_percentile(q) for q in qs]
        if len(set(widths)) != len(widths):
            raise InputError(f"sigma percentiles {qs} give coinciding widths {widths}: "
                             "choose more distinct percentiles")
        return widths, [label(q) for q in qs]
    if cfg.sigma is not None:
        return [float(cfg.sigma)], ["user"]
    return [from_percentile(cfg.sigma_percentile)], [label(cfg.sigma_percentile)]
