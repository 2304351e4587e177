"""NEAT: NeuroEvolution of Augmenting Topologies (Stanley & Miikkulainen 2002), ask/tell.

Each ``tell`` makes the next generation from this one's fitness, as the paper (section 3):

1. stagnation: species that have not improved for ``max_stagnation`` generations die
   (``species.py``);
2. explicit fitness sharing sets each species' offspring count; the ``elitism`` best of a
   species are copied, the other children get two parents from its best
   (``reproduction.py``);
3. crossover aligned by innovation number (``crossover.py``), then structural mutation with
   historical markings (``mutation.py``, ``innovation.py``) and attribute mutation
   (``attributes.py``);
4. speciation by compatibility distance (``distance.py``, ``species.py``).

Everything runs on padded tensors for the whole population at once (``NEATPopulation``), no
Python loop over genomes or genes. Every random draw comes from ``neuroevo.core.random``
keyed by (seed, generation, purpose), so a state_dict round trip continues bit-identically.
``ask()`` returns a ``NEATPopulation`` for ``neuroevo.nn.NEATPhenotype``; ``best.params`` is
one genome dict. ``tell`` returns the species sizes of the population it was told about as
``species/<id>`` stats (the report's species plot reads them from ``metrics.jsonl``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.nn.neat.draw import species_stats
from neuroevo.nn.neat.population import NEATPopulation, cat_populations
from neuroevo.strategies.base import OnNan, Strategy
from neuroevo.strategies.neat.attributes import mutate_attributes
from neuroevo.strategies.neat.crossover import crossover
from neuroevo.strategies.neat.distance import DistanceCache, compatibility_distance
from neuroevo.strategies.neat.initial import initial_blocks, initial_population
from neuroevo.strategies.neat.innovation import InnovationTracker
from neuroevo.strategies.neat.mutation import StructuralMutation
from neuroevo.strategies.neat.params import GenomeConfig, NEATParams
from neuroevo.strategies.neat.reproduction import choose_parents, offspring_counts
from neuroevo.strategies.neat.species import SpeciesSet


class NEAT(Strategy):
    """NEAT over a population of padded-tensor genomes; ``ask()`` returns a ``NEATPopulation``."""

    name = "neat"
    Params = NEATParams
    population_kind = PopulationKind.NEAT

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        population_size: int = 150,
        *,
        seed: int = 0,
        on_nan: OnNan = "worst",
        output_activation: str | None = None,
        **options: Any,
    ):
        self.params = p = NEATParams(population_size=population_size, on_nan=on_nan, **options)
        super().__init__(0, population_size, seed=seed, on_nan=on_nan)
        if num_inputs < 1 or num_outputs < 1:
            raise ConfigError(
                f"NEAT needs inputs and outputs; got {num_inputs} inputs, {num_outputs} outputs"
            )
        self.genome_config = GenomeConfig.from_params(p, num_inputs, num_outputs, output_activation)
        pairs = sum(len(s) * len(d) for s, d in initial_blocks(p, self.genome_config))
        self.innovations = InnovationTracker(self.genome_config.first_hidden + p.num_hidden, pairs)
        self.population = initial_population(p, self.genome_config, population_size, self._gen(0, "init"))
        self.species = SpeciesSet.empty(population_size, p.compatibility_threshold)
        self._distance_cache: DistanceCache | None = None
        self._speciate(self.population, 0)

    @classmethod
    def from_params(cls, params: NEATParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> NEAT:
        """Build from config keys; inputs, outputs and any fixed output activation come from ``phenotype``."""
        kw.setdefault("output_activation", getattr(phenotype, "output_activation", None))
        kw.pop("device", None)
        kw.pop("dtype", None)
        return cls(phenotype.in_features, phenotype.out_features, seed=seed, **params.model_dump(), **kw)

    def _gen(self, generation: int, purpose: str) -> torch.Generator:
        return nrandom.member_generator(self.seed, generation, 0, "neat-" + purpose)

    # -- ask / tell ------------------------------------------------------------------------------
    def _ask(self) -> NEATPopulation:
        return self.population

    def member(self, population: Any, index: int) -> dict[str, Any]:
        """Genome ``index`` as a dict of tensors + JSON metadata (what ``best.params`` holds)."""
        return population.genome(index)

    def _tell(self, population: NEATPopulation, fitness: torch.Tensor) -> dict[str, float]:
        # reproduction and speciation make many small tensors that never need autograd
        with torch.inference_mode():
            return self._reproduce(population, fitness)

    def _reproduce(self, population: NEATPopulation, fitness: torch.Tensor) -> dict[str, float]:
        """Stagnation, offspring counts, parents, crossover, mutation, speciation."""
        p, species, child_gen = self.params, self.species, self.generation + 1
        sizes = species.sizes()
        told = species_stats(species.id, sizes)
        alive = species.stagnation(p, fitness, self.generation)
        if not bool(alive.any()):
            if not p.reset_on_extinction:
                raise RuntimeError(
                    f"generation {self.generation}: every species stagnated (reset_on_extinction = "
                    "false; set it true or raise species_elitism)"
                )
            size, init = self.population_size, self._gen(child_gen, "init")
            self.population = initial_population(p, self.genome_config, size, init)
            self.species = SpeciesSet.empty(size, species.threshold, species.next_id)
            self._speciate(self.population, child_gen)
            return self._stats(told, extinct=1.0)
        spawn = offspring_counts(p, fitness, species.member, sizes, alive)
        parents = choose_parents(p, fitness, species.member, sizes, spawn, self._gen(child_gen, "parents"))
        # children ordered by their fitter parent's size (a child has its structure), elites
        # last: the population comes out nearly sorted by size, so crossover reads the parents
        # and NEATPhenotype selects its size groups in close to memory order
        nodes, conns = population.gene_counts()
        size = nodes.numpy() + conns.numpy()
        primary, secondary, elites = (
            parents.primary.numpy(),
            parents.secondary.numpy(),
            parents.elites.numpy(),
        )
        by_size = np.argsort(size[primary], kind="stable")
        elites = torch.from_numpy(elites[np.argsort(size[elites], kind="stable")])
        gen = self._gen(child_gen, "crossover")
        kids = self.crossover(
            population, torch.from_numpy(primary[by_size]), torch.from_numpy(secondary[by_size]), gen
        )
        kids = self.mutate(kids, child_gen, in_place=True)  # crossover's tensors are new
        self.population = cat_populations([kids, population.select(elites)], trim=True)
        self._speciate(self.population, child_gen)
        return self._stats(told)

    def _stats(self, told: dict[str, float], extinct: float = 0.0) -> dict[str, float]:
        pop, size = self.population, max(len(self.population), 1)
        return {
            "num_species": float(len(self.species)),
            "compatibility_threshold": float(self.species.threshold),
            "mean_nodes": float(pop.gene_counts()[0].numpy().sum()) / size,
            "mean_connections": np.count_nonzero(pop.conn_enabled.numpy()) / size,  # empty slots are disabled
            "extinctions": extinct,
            **told,
        }

    # -- the operators ---------------------------------------------------------------------------
    def crossover(
        self, pop: NEATPopulation, primary: torch.Tensor, secondary: torch.Tensor, gen: torch.Generator
    ) -> NEATPopulation:
        """Children of (primary = fitter, secondary) aligned by innovation number / node id."""
        rate, constant = self.params.crossover_disabled_rate, self.genome_config.constant
        return crossover(pop, primary, secondary, gen, disabled_rate=rate, constant=constant)

    def mutate(self, pop: NEATPopulation, generation: int, *, in_place: bool = False) -> NEATPopulation:
        """Structural mutations, then attribute mutations. ``in_place``: ``pop``'s tensors
        belong to the caller and may be overwritten."""
        if not in_place:
            pop = pop.replace(**{name: t.clone() for name, t in pop.tensors.items()})
        structural = StructuralMutation(self.params, self.genome_config, self.innovations)
        pop = structural(pop, self._gen(generation, "structure"))
        return mutate_attributes(self.params, self.genome_config, pop, self._gen(generation, "attributes"))

    def distance(self, a: NEATPopulation, b: NEATPopulation) -> torch.Tensor:
        """Compatibility distances ``[len(a), len(b)]`` with this strategy's coefficients."""
        p = self.params
        return compatibility_distance(
            a,
            b,
            disjoint_coefficient=p.compatibility_disjoint_coefficient,
            weight_coefficient=p.compatibility_weight_coefficient,
            excess_coefficient=p.compatibility_excess_coefficient,
            constant=self.genome_config.constant,
            cache=self._distance_cache,
        )

    def _speciate(self, pop: NEATPopulation, generation: int) -> None:
        self._distance_cache = DistanceCache(pop)  # pop's dense rows, kept between the passes
        try:
            self.species.speciate(self.params, pop, generation, self.distance)
        finally:
            self._distance_cache = None

    @property
    def member_species(self) -> torch.Tensor:
        """Species index of every member of the current population."""
        return self.species.member

    @property
    def species_sizes(self) -> dict[int, int]:
        """Current species id -> member count."""
        return dict(zip(self.species.id.tolist(), self.species.sizes().tolist(), strict=True))

    @property
    def compatibility_threshold(self) -> float:
        return self.species.threshold

    # -- report and checkpoints ------------------------------------------------------------------
    def write_report(self, folder: Any) -> None:
        """``species.png`` from the run's ``metrics.jsonl`` (next to ``folder``), and the best
        genome drawn as SVG and PNG."""
        from neuroevo.nn.neat.draw import draw_genome, plot_species, species_history

        folder = Path(folder)
        metrics = folder.parent / "metrics.jsonl"
        if metrics.exists() and species_history(metrics)[1]:
            plot_species(metrics, folder / "species.png")
        if self.best is not None:
            for suffix in ("svg", "png"):
                draw_genome(self.best.params, folder / f"best_genome.{suffix}", title="best genome")

    def _state(self) -> dict[str, Any]:
        return {
            "population": self.population.state(),
            "species": self.species.state(),
            "innovations": self.innovations.state(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.population = NEATPopulation.from_state(state["population"])
        self.species = SpeciesSet.from_state(state["species"])
        self.innovations = InnovationTracker.from_state(state["innovations"])


__all__ = ["NEAT"]
