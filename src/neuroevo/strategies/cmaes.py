"""CMA-ES (Hansen, "The CMA Evolution Strategy: A Tutorial", 2016) with IPOP restarts.

The search distribution is ``N(m, sigma^2 C)``. Each generation samples ``z_k ~ N(0, I)``
(float32 normals from one generator keyed by (seed, generation)), ``y_k = B D z_k``
(``C = B D^2 B^T``) and evaluates ``x_k = m + sigma y_k``. With the members sorted best first (we maximise):

- weighted recombination: ``<y>_w = sum_{i<=mu} w_i y_i:lambda``, ``m <- m + c_m sigma <y>_w``;
- cumulative step-size adaptation (CSA):
  ``p_s <- (1 - c_s) p_s + sqrt(c_s (2 - c_s) mu_eff) C^-1/2 <y>_w``,
  ``sigma <- sigma exp(c_s / d_s (|p_s| / E|N(0, I)| - 1))``;
- covariance: the rank-one update from the evolution path
  ``p_c <- (1 - c_c) p_c + h_s sqrt(c_c (2 - c_c) mu_eff) <y>_w`` and the rank-mu update
  ``sum_i w_i° y_i y_i^T``, ``C <- (1 + c_1 delta(h_s) - c_1 - c_mu sum w) C + c_1 p_c p_c^T
  + c_mu sum_i w_i° y_i y_i^T``. With ``active = true`` (the tutorial's default) the worse
  half gets the tutorial's negative weights, rescaled by ``n / |C^-1/2 y_i|^2``.

All constants (weights, ``mu_eff``, ``c_s``, ``d_s``, ``c_c``, ``c_1``, ``c_mu``) are the
tutorial's Table 1 defaults for dimension ``n`` and ``lambda = 4 + floor(3 ln n)``. The
eigendecomposition of ``C`` is refreshed once more than ``0.5 / (n (c_1 + c_mu))``
generations have passed since the last one (lazy update, the rule of Hansen's ``purecma``:
``C`` changes by O(c_1 + c_mu) per generation, so ``B`` and ``D`` stay accurate for about
``1 / (n (c_1 + c_mu))`` generations), which amortises the O(n^3) decomposition to O(n^2)
per generation. Because every ``y_k = B D z_k`` is sampled from the current decomposition,
``C^-1/2 y_k = B z_k`` and ``|C^-1/2 y_k| = |z_k|``: the whitening of CSA and of the active
weights needs no solve (tutorial, eq. 39 and 46).

IPOP (Auger & Hansen 2005): when a run stops making progress it is restarted from the
initial mean and step size with the population multiplied by ``popsize_factor`` (2). A run
stops when (Hansen 2009, "Benchmarking a BI-population CMA-ES"): the best fitness of the
last ``10 + ceil(30 n / lambda)`` generations and this generation's fitnesses all lie within
``tolfun``; ``sigma`` times every ``p_c`` entry and every std is below ``tolx``; the
condition number of ``C`` exceeds ``tolconditioncov``; adding 0.1 std along a principal
axis or 0.2 std along a coordinate leaves the mean unchanged (no effect); ``sigma`` grew by
more than ``tolfacupx``; or the median of the last 20 best and median fitnesses is no
better than 20 generations a stagnation window ago. The population size therefore changes
between generations: ``population_size`` (and ``expected_population_size()``) always give
the size of the next ``ask()``.

The distribution is kept in float64 whatever ``dtype`` the population is handed out in.
The search state is one ``CMAState`` (mean, sigma, paths, the covariance container, the
restart bookkeeping); the constants of Table 1 are attributes derived from its population
size and recomputed at each restart and after a load.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field

from neuroevo.core import random as nrandom
from neuroevo.strategies.base import NoiseParams, Strategy, StrategyParams

InitFn = Callable[[torch.Generator], torch.Tensor]
F64 = torch.float64


class CMAESParams(NoiseParams, StrategyParams):
    population_size: int | None = Field(  # type: ignore[assignment]
        None, ge=2, description="lambda of the first run; None = 4 + floor(3 ln n)"
    )
    sigma: float = Field(0.1, gt=0, description="initial step size sigma_0 (about 1/4 of the search range)")
    active: bool = Field(True, description="negative weights for the worse half (active CMA)")
    restarts: int = Field(9, ge=0, description="IPOP restarts allowed (0 = a single run)")
    popsize_factor: float = Field(2.0, ge=1, description="population multiplier at each restart")
    tolfun: float = Field(1e-11, ge=0, description="restart when recent fitness values span less")
    tolx: float = Field(1e-11, ge=0, description="restart when every std (times sigma) is below")
    tolconditioncov: float = Field(1e14, gt=1, description="restart when cond(C) exceeds")
    tolfacupx: float = Field(1e3, gt=1, description="restart when sigma * max std grew by this factor")
    tolstagnation: int | None = Field(
        None, ge=1, description="generations before stagnation is tested; None = 100 + 100 n^1.5 / lambda"
    )


@dataclass
class FullCovariance:
    """``C = B D^2 B^T`` with the eigenbasis ``B`` and axis lengths ``D`` of the last decomposition."""

    C: torch.Tensor
    B: torch.Tensor
    D: torch.Tensor
    Bt: torch.Tensor = field(init=False, repr=False)  # derived: B^T

    def __post_init__(self) -> None:
        self.set_basis(self.B)

    def set_basis(self, b: torch.Tensor) -> None:
        # Row-major B and B^T: the same memory layout as after a checkpoint (same matmul
        # kernels, same bits), and the layout BLAS multiplies fastest for thin matrices.
        self.B = b.contiguous()
        self.Bt = b.T.contiguous()


class RankBuffers:
    """Scratch of the full covariance update, reused every generation of one IPOP run (not state).

    ``rows`` holds ``y_1..y_lambda`` (written by ``ask``) and ``p_c``; ``coef`` their weights
    ``c_mu w_i°`` and ``c_1``; ``scaled`` the weighted rows (and ``z D`` during ``ask``). The
    decay, rank-one and rank-mu terms are then one ``addmm_`` into ``C`` with no allocation.
    """

    def __init__(self, lam: int, n: int, c_1: float):
        self.rows = torch.empty((lam + 1, n), dtype=F64)
        self.rows_t = self.rows.T
        self.y, self.p_c = self.rows[:lam], self.rows[lam]
        self.coef = torch.empty(lam + 1, dtype=F64)
        self.coef[lam] = c_1
        self.coef_w, self.coef_col = self.coef[:lam], self.coef.unsqueeze(1)
        self.scaled = torch.empty((lam + 1, n), dtype=F64)
        self.zd = self.scaled[:lam]


@dataclass
class CMAState:
    """Everything CMA-ES changes while it runs (float64, CPU)."""

    population_size: int  # lambda of the current IPOP run
    x0: torch.Tensor  # the initial mean every restart returns to
    mean: torch.Tensor
    sigma: float
    p_s: torch.Tensor
    p_c: torch.Tensor
    covariance: Any  # FullCovariance here, a diagonal in sep-CMA-ES
    run_generation: int
    eigen_at: int
    restarts_done: int
    last_stop: str
    best_history: torch.Tensor
    median_history: torch.Tensor


class CMAES(Strategy):
    """Full-covariance CMA-ES with active update, CSA, lazy eigendecomposition and IPOP restarts."""

    name = "cmaes"
    Params = CMAESParams
    noise_scheme = 2  # 1 (before 2026-12): per-member keys, float64 draws
    params: CMAESParams
    state: CMAState

    def __init__(
        self,
        num_params: int,
        population_size: int | None = None,
        *,
        params: BaseModel | dict[str, Any] | None = None,
        center: torch.Tensor | None = None,
        init: InitFn | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        **keys: Any,
    ):
        """``keys`` are the class's ``Params`` fields (sigma, restarts, tol*, ...); or pass ``params``."""
        n = int(num_params)
        p = self.params = self.resolve_params(params, population_size, keys)
        lam = p.population_size or 4 + int(math.floor(3 * math.log(max(1, n))))
        super().__init__(n, lam, seed=seed, on_nan=p.on_nan)
        self.dtype, self.device = dtype, torch.device(device)
        if center is None:
            center = init(nrandom.member_generator(seed, 0, 0, "init")) if init else torch.zeros(n)
        x0 = torch.as_tensor(center).reshape(-1).to(F64).cpu().clone()
        if x0.numel() != n:
            raise ValueError(f"center has {x0.numel()} entries; expected {n}")
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.state = self._start(lam, x0, restarts_done=0, last_stop="")

    @property
    def population_size(self) -> int:
        return self.state.population_size

    @property
    def sigma(self) -> float:
        """The step size of the next ``ask()``."""
        return self.state.sigma

    @property
    def restarts_done(self) -> int:
        return self.state.restarts_done

    @property
    def last_stop(self) -> str:
        """The stopping criterion that ended the last IPOP run ('' before the first restart)."""
        return self.state.last_stop

    # -- strategy parameters (tutorial, Table 1) ----------------------------------------------
    def _setup(self, lam: int) -> None:
        """Weights and learning rates for population size ``lam``."""
        n = self.num_params
        self.mu = lam // 2
        raw = math.log((lam + 1) / 2) - torch.log(torch.arange(1, lam + 1, dtype=F64))
        pos, neg = raw[: self.mu], raw[self.mu :]
        self.mu_eff = float(pos.sum() ** 2 / (pos**2).sum())
        alpha_cov = 2.0
        self.c_c = (4 + self.mu_eff / n) / (n + 4 + 2 * self.mu_eff / n)
        self.c_s = (self.mu_eff + 2) / (n + self.mu_eff + 5)
        self.c_1 = alpha_cov / ((n + 1.3) ** 2 + self.mu_eff)
        self.c_mu = min(
            1 - self.c_1,
            alpha_cov * (self.mu_eff - 2 + 1 / self.mu_eff) / ((n + 2) ** 2 + alpha_cov * self.mu_eff / 2),
        )
        self._scale_learning_rates()
        self.d_s = 1 + 2 * max(0.0, math.sqrt((self.mu_eff - 1) / (n + 1)) - 1) + self.c_s
        weights = torch.zeros(lam, dtype=F64)
        weights[: self.mu] = pos / pos.sum()
        if self.params.active and neg.numel() and float(neg.sum()) < 0:
            mu_eff_neg = float(neg.sum() ** 2 / (neg**2).sum())
            alpha_neg = min(
                1 + self.c_1 / self.c_mu,
                1 + 2 * mu_eff_neg / (self.mu_eff + 2),
                (1 - self.c_1 - self.c_mu) / (n * self.c_mu),
            )
            weights[self.mu :] = alpha_neg * neg / neg.abs().sum()
        self.weights = weights
        self._weights_np = weights.numpy()
        self.c_m = 1.0
        self.w_sum = float(weights.sum())
        self.has_negative = bool((weights < 0).any())
        # purecma's lazy_gap_evals, in generations: decompose once more have passed
        self.eigen_gap = 0.5 / (n * (self.c_1 + self.c_mu))
        self.tolstagnation = self.params.tolstagnation or int(100 + 100 * n**1.5 / lam)
        self.tolfun_window = 10 + math.ceil(30 * n / lam)
        self._buffers: RankBuffers | None = None  # created by the first ask of this run
        self._noise_buffer: torch.Tensor | None = None  # z of the current generation (see _ask)
        self._draw_buffer: torch.Tensor | None = None  # its float32 draws (the same tensor if float32)
        self._median_at = lam // 2  # sorted best first, [lam // 2] is torch.median's (lower) median
        self._condition_of: torch.Tensor | None = None  # the D whose condition is cached
        self._condition = 1.0

    def _scale_learning_rates(self) -> None:
        """Hook for sep-CMA-ES, which learns the diagonal faster."""

    # -- covariance representation (full here; diagonal in sep-CMA-ES) ---------------------------
    def _new_covariance(self) -> Any:
        n = self.num_params
        return FullCovariance(
            C=torch.eye(n, dtype=F64), B=torch.eye(n, dtype=F64), D=torch.ones(n, dtype=F64)
        )

    def _sample_y(self, z: torch.Tensor) -> torch.Tensor:
        """``y = B D z`` for rows ``z``, written into the rank-mu buffer of this run."""
        cov, buf = self.state.covariance, self._buffers
        if buf is None or buf.y.shape != z.shape:
            buf = self._buffers = RankBuffers(z.shape[0], self.num_params, self.c_1)
        return torch.mm(torch.mul(z, cov.D, out=buf.zd), cov.Bt, out=buf.y)

    def _whiten_sampled(self, z: torch.Tensor) -> torch.Tensor:
        """``C^-1/2 y`` for ``y = B D z`` sampled from one vector ``z``: ``B z``."""
        return torch.mm(z.unsqueeze(0), self.state.covariance.Bt).squeeze_(0)

    def _noise_dtype(self) -> torch.dtype:
        """The dtype of the samples ``z`` (float64: full CMA-ES whitens with them)."""
        return F64

    def _members(self, z: torch.Tensor) -> torch.Tensor:
        """The population ``m + sigma y`` for rows ``z`` (keeps ``y`` for ``tell``)."""
        self._y = self._sample_y(z)
        return torch.mul(self._y, self.state.sigma).add_(self.state.mean)

    def _weighted_y(self, w: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k y_k`` over this generation's members (weights in member order)."""
        return torch.mm(w.unsqueeze(0), self._y).squeeze_(0)  # what w @ y runs

    def _weighted_z(self, w: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k z_k`` (float64) over this generation's samples."""
        z = self._z
        return torch.mm(w.to(z.dtype).unsqueeze(0), z).squeeze_(0).to(F64)

    def _update_covariance(self, decay: float, p_c: torch.Tensor, w: torch.Tensor, generation: int) -> None:
        cov, state, buf = self.state.covariance, self.state, self._buffers
        # decay C + c_1 p_c p_c^T + c_mu sum_i w_i y_i y_i^T as one matrix product
        buf.p_c.copy_(p_c)
        torch.mul(w, self.c_mu, out=buf.coef_w)
        torch.mul(buf.rows, buf.coef_col, out=buf.scaled)
        cov.C.mul_(decay).addmm_(buf.rows_t, buf.scaled)
        if generation - state.eigen_at > self.eigen_gap:
            state.eigen_at = generation
            cov.C = 0.5 * (cov.C + cov.C.T)  # (torch.triu is parallelised and slow on busy CPUs)
            d2, b = torch.linalg.eigh(cov.C)
            cov.D = d2.clamp_min(1e-300).sqrt()
            cov.set_basis(b)

    def _diag_c(self) -> torch.Tensor:
        return torch.diagonal(self.state.covariance.C)

    def _axis(self, i: int) -> torch.Tensor:
        cov = self.state.covariance
        return cov.Bt[i] * cov.D[i]

    # -- one run of IPOP ------------------------------------------------------------------------
    def _start(self, lam: int, x0: torch.Tensor, *, restarts_done: int, last_stop: str) -> CMAState:
        """A fresh (re)start with population ``lam`` from the initial mean and step size."""
        self._setup(lam)
        n = self.num_params
        self._y: torch.Tensor | None = None
        self._z: torch.Tensor | None = None
        return CMAState(
            population_size=lam,
            x0=x0,
            mean=x0.clone(),
            sigma=self.params.sigma,
            p_s=torch.zeros(n, dtype=F64),
            p_c=torch.zeros(n, dtype=F64),
            covariance=self._new_covariance(),
            run_generation=0,
            eigen_at=0,
            restarts_done=restarts_done,
            last_stop=last_stop,
            best_history=torch.zeros(0, dtype=F64),
            median_history=torch.zeros(0, dtype=F64),
        )

    def _restore(self) -> None:
        self._setup(self.state.population_size)
        self._y = self._z = None

    @property
    def center(self) -> torch.Tensor:
        return self.state.mean.to(self.dtype).to(self.device)

    @property
    def condition_number(self) -> float:
        """``cond(C) = (max D / min D)^2``, computed once per decomposition."""
        d = self.state.covariance.D
        if self._condition_of is not d:
            self._condition_of, self._condition = d, float((d.max() / d.min()) ** 2)
        return self._condition

    def _ask(self) -> torch.Tensor:
        # One generator per generation, keyed (seed, generation, 0, "noise"), fills all lambda rows
        # with float32 normals (no Python loop over members: CMA-ES never regenerates one member
        # alone, its parallel evaluation ships the members themselves), upcast exactly where the
        # samples are float64. The buffers live for one IPOP run (no fresh [lambda, n] allocation,
        # whose pages the kernel would fault in again); ``noise_scheme = 2`` records this keying.
        size, dtype, z = (self.population_size, self.num_params), self._noise_dtype(), self._noise_buffer
        if z is None or z.shape != size or z.dtype != dtype:
            z = self._noise_buffer = torch.empty(size, dtype=dtype)
            self._draw_buffer = z if dtype == torch.float32 else torch.empty(size)
        if self.noise_generator == "philox":  # one Philox stream per member, drawn at once
            nrandom.population_normal(
                size[0],
                size[1],
                self.seed,
                self.generation,
                "noise",
                out=self._draw_buffer,
                generator="philox",
            )
        else:
            self._draw_buffer.normal_(
                generator=nrandom.member_generator(self.seed, self.generation, 0, "noise")
            )
        if self._draw_buffer is not z:
            z.copy_(self._draw_buffer)
        self._z = z
        return self._members(z).to(self.dtype).to(self.device)

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        # The [lambda, n] products run in torch (the hooks); the n-vectors, weights and histories
        # are NumPy views of the state's tensors, whose small ops cost a third of torch's.
        n, s = self.num_params, self.state
        z, f = self._z, fitness.numpy()
        order = np.argsort(-f, kind="stable")  # best first; ties keep member order
        sorted_f = f[order]
        # the rank weights in member order: no [lambda, n] gather of the sorted samples
        w = np.empty_like(self._weights_np)
        w[order] = self._weights_np
        w_pos = torch.from_numpy(np.maximum(w, 0.0))  # the mu best (their weights are > 0, the others <= 0)
        y_w = self._weighted_y(w_pos).numpy()
        s.mean = torch.from_numpy(s.mean.numpy() + self.c_m * s.sigma * y_w)
        s.run_generation += 1
        cs, cc = self.c_s, self.c_c
        # C^-1/2 <y>_w = B <z>_w: the sample was drawn from the current decomposition
        z_w = self._weighted_z(w_pos)
        p_s = (1 - cs) * s.p_s.numpy() + math.sqrt(cs * (2 - cs) * self.mu_eff) * self._whiten_sampled(
            z_w
        ).numpy()
        s.p_s = torch.from_numpy(p_s)
        ps_norm = math.sqrt(float(p_s @ p_s))
        h_s = ps_norm / math.sqrt(1 - (1 - cs) ** (2 * s.run_generation)) < (1.4 + 2 / (n + 1)) * self.chi_n
        p_c = (1 - cc) * s.p_c.numpy() + (math.sqrt(cc * (2 - cc) * self.mu_eff) if h_s else 0.0) * y_w
        s.p_c = torch.from_numpy(p_c)
        w_circ = w
        if self.has_negative:  # rescaled by n / |C^-1/2 y_i|^2 = n / |z_i|^2
            norms = torch.linalg.vector_norm(z, dim=-1).to(F64).square_().clamp_min_(1e-300).numpy()
            w_circ = np.where(w < 0, w * (n / norms), w)
        delta = 0.0 if h_s else cc * (2 - cc)
        decay = 1 + self.c_1 * delta - self.c_1 - self.c_mu * self.w_sum
        self._update_covariance(decay, s.p_c, torch.from_numpy(w_circ), s.run_generation)
        # CSA; the exponent is capped at 1 (sigma at most x e per generation) against blow-ups
        s.sigma *= math.exp(min(1.0, (cs / self.d_s) * (ps_norm / self.chi_n - 1)))
        self._y = self._z = None
        cap, mid = self._history_cap(), self._median_at
        s.best_history = torch.from_numpy(np.concatenate([s.best_history.numpy()[1 - cap :], sorted_f[:1]]))
        s.median_history = torch.from_numpy(
            np.concatenate([s.median_history.numpy()[1 - cap :], sorted_f[mid : mid + 1]])
        )
        condition = self.condition_number
        stats = {"sigma": s.sigma, "condition": condition, "population_size": z.shape[0]}
        reason = self._stop_reason(f, condition)
        if reason and s.restarts_done < self.params.restarts:
            lam = int(round(s.population_size * self.params.popsize_factor))
            self.state = self._start(lam, s.x0, restarts_done=s.restarts_done + 1, last_stop=reason)
        stats["restarts"] = self.state.restarts_done
        return stats

    # -- termination criteria that trigger a restart ------------------------------------------
    def _history_cap(self) -> int:
        return max(self.tolfun_window, self.tolstagnation + 1, 40)

    def _stop_reason(self, fitness: np.ndarray | torch.Tensor, condition: float | None = None) -> str:
        """The name of the first satisfied stopping criterion of this run, or ''."""
        p, s = self.params, self.state
        sigma, mean, fitness = s.sigma, s.mean.numpy(), np.asarray(fitness)
        std = np.sqrt(self._diag_c().numpy()) * sigma
        std_max = float(std.max())
        hist = s.best_history.numpy()
        if hist.size >= self.tolfun_window:
            recent = np.concatenate([hist[-self.tolfun_window :], fitness])
            if float(recent.max() - recent.min()) < p.tolfun:
                return "tolfun"
        if std_max < p.tolx and float(np.abs(s.p_c.numpy()).max()) * sigma < p.tolx:
            return "tolx"
        if (self.condition_number if condition is None else condition) > p.tolconditioncov:
            return "conditioncov"
        i = s.run_generation % self.num_params
        if np.array_equal(mean, mean + 0.1 * sigma * self._axis(i).numpy()):
            return "noeffectaxis"
        if bool((mean == mean + 0.2 * std).any()):
            return "noeffectcoord"
        if std_max > p.tolfacupx * p.sigma:
            return "tolfacupx"
        g = s.run_generation
        if g > self.tolstagnation and hist.size > self.tolstagnation:
            span = min(hist.size, max(self.tolstagnation, int(0.3 * g)))
            for h in (hist[-span:], s.median_history.numpy()[-span:]):
                if _lower_median(h[-20:]) <= _lower_median(h[:20]):
                    return "stagnation"
        return ""


def _lower_median(x: np.ndarray) -> float:
    """The lower of the two middle values for an even count (what ``torch.median`` returns)."""
    return float(np.partition(x, (x.size - 1) // 2)[(x.size - 1) // 2])
