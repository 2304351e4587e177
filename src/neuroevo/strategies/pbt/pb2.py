"""PB2's explore step (Parker-Holder et al. 2020, "Provably Efficient Online Hyperparameter
Optimization with Population-Based Bandits"): a GP bandit over the bounded hyperparameters.

Data: one point per member and ready interval, ``(t, x, y)`` with ``t`` the member's training
step at the ready point, ``x`` its continuous and integer hyperparameters in [0, 1] coordinates
(log-scale ones in log space) and ``y`` the change in fitness over the interval. The GP
(scikit-learn ``GaussianProcessRegressor``) uses an anisotropic RBF over ``(t, x)`` times a
constant, plus white noise: an RBF in ``t`` times an RBF in ``x``, i.e. the time-varying kernel
of the paper with squared-exponential forgetting. Only the last ``window`` ready intervals are
kept (the paper's data window; it also bounds the GP's cost).

Selection: for each exploited member in turn, the candidate maximising the UCB
``mu + kappa * sigma`` at the next ready step, over ``candidates`` uniform draws in [0, 1]^d plus
the parent's own point. Members chosen in the same round are added to the data with their
predicted mean as observation and the GP is refit with its kernel fixed (GP-BUCB,
Desautels et al. 2014), so later picks of the round see the reduced variance and spread out.
Everything is deterministic given the data and the uniforms, so a resumed run repeats it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def _gp(kernel=None):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    return GaussianProcessRegressor(
        kernel=kernel,
        normalize_y=True,
        optimizer="fmin_l_bfgs_b" if kernel is None else None,
        n_restarts_optimizer=0,
        random_state=0,
    ), (ConstantKernel, RBF, WhiteKernel)


def select(
    t: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    t_next: float,
    parents_x: torch.Tensor,
    candidates: torch.Tensor,
    kappa: float,
) -> torch.Tensor:
    """New unit-cube points ``[k, d]`` for ``k`` exploited members (one row of ``parents_x`` each).

    ``t[N]``, ``x[N, d]``, ``y[N]``: the data; ``candidates[k, C, d]``: uniform draws per member.
    """
    from sklearn.exceptions import ConvergenceWarning

    gp, (constant, rbf, white) = _gp()
    d = x.shape[1]
    scale = max(float(t.max()), 1.0)
    features = torch.cat([(t / scale).unsqueeze(1), x], 1).numpy().astype(np.float64)
    targets = y.numpy().astype(np.float64)
    kernel = constant(1.0, (1e-3, 1e3)) * rbf(np.ones(d + 1), (1e-2, 1e2)) + white(1e-2, (1e-6, 1e1))
    gp.kernel = kernel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(features, targets)
    fitted = gp.kernel_
    chosen = []
    for k in range(parents_x.shape[0]):
        pool = torch.cat([parents_x[k : k + 1], candidates[k]], 0).numpy().astype(np.float64)
        query = np.concatenate([np.full((pool.shape[0], 1), t_next / scale), pool], 1)
        mean, std = gp.predict(query, return_std=True)
        best = int(np.argmax(mean + kappa * std))
        chosen.append(pool[best])
        # GP-BUCB: hallucinate the predicted mean at the chosen point, keep the kernel fixed
        features = np.concatenate([features, query[best : best + 1]], 0)
        targets = np.concatenate([targets, mean[best : best + 1]], 0)
        gp, _ = _gp(fitted)
        gp.fit(features, targets)
    return torch.tensor(np.stack(chosen), dtype=torch.float64)
