"""NEAT's config keys (``NEATParams``) and what they mean for one run's genomes (``GenomeConfig``).

Names follow neat-python where it has one; defaults are its XOR example's, except
``activation_default = "neat_sigmoid"`` (neat-python's ``sigmoid`` is the steepened one) and
``conn_delete_prob = node_delete_prob = 0`` (the paper never deletes genes; with
neat-python's 0.5 / 0.2 our XOR runs needed several times more generations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from neuroevo.nn.activations import ACTIVATIONS
from neuroevo.nn.init import INITIALIZERS, get_initializer
from neuroevo.nn.neat.genes import AGGREGATIONS, aggregation_index
from neuroevo.strategies.base import StrategyParams

InitialConnection = Literal[
    "full",
    "full_nodirect",
    "full_direct",
    "partial",
    "partial_nodirect",
    "partial_direct",
    "none",
    "unconnected",
]


class NEATParams(StrategyParams):
    """NEAT config keys (neat-python names); defaults follow neat-python's XOR example."""

    population_size: int = Field(150, ge=2, description="genomes per generation (neat-python pop_size)")
    reset_on_extinction: bool = Field(False, description="restart from new genomes if every species dies")
    # genome structure
    feed_forward: bool = Field(True, description="no cycles; false allows recurrent connections")
    num_hidden: int = Field(0, ge=0, description="hidden nodes in the initial genomes")
    initial_connection: InitialConnection = Field(
        "full", description="full[_nodirect|_direct], partial[_nodirect|_direct], none/unconnected"
    )
    initial_connection_fraction: float = Field(0.5, ge=0, le=1, description="kept fraction for partial")
    # node activation / aggregation
    activation_default: str = Field("neat_sigmoid", description="activation of new nodes (registry name)")
    activation_options: list[str] = Field(
        default_factory=lambda: ["neat_sigmoid"],
        description="activations a mutation may pick (registry names)",
    )
    activation_mutate_rate: float = Field(0.0, ge=0, le=1, description="per node: chance of a random option")
    aggregation_default: str = Field("sum", description="one of " + ", ".join(AGGREGATIONS))
    aggregation_options: list[str] = Field(
        default_factory=lambda: ["sum"], description="aggregations a mutation may pick"
    )
    aggregation_mutate_rate: float = Field(0.0, ge=0, le=1, description="per node: chance of a random option")
    # bias
    bias_init_mean: float = Field(0.0, description="mean of new values")
    bias_init_stdev: float = Field(1.0, ge=0, description="stdev of new values")
    bias_init_type: Literal["gaussian", "uniform"] = Field(
        "gaussian", description="gaussian: N(mean, stdev); uniform: U(mean -/+ 2 stdev)"
    )
    bias_max_value: float = Field(30.0, description="values are clamped to at most this")
    bias_min_value: float = Field(-30.0, description="values are clamped to at least this")
    bias_mutate_power: float = Field(0.5, ge=0, description="stdev of the Gaussian perturbation")
    bias_mutate_rate: float = Field(0.7, ge=0, le=1, description="per gene: chance of a perturbation")
    bias_replace_rate: float = Field(0.1, ge=0, le=1, description="per gene: chance of a fresh value instead")
    # response (multiplies the aggregate)
    response_init_mean: float = Field(1.0, description="mean of new values")
    response_init_stdev: float = Field(0.0, ge=0, description="stdev of new values")
    response_init_type: Literal["gaussian", "uniform"] = Field(
        "gaussian", description="gaussian: N(mean, stdev); uniform: U(mean -/+ 2 stdev)"
    )
    response_max_value: float = Field(30.0, description="values are clamped to at most this")
    response_min_value: float = Field(-30.0, description="values are clamped to at least this")
    response_mutate_power: float = Field(0.0, ge=0, description="stdev of the Gaussian perturbation")
    response_mutate_rate: float = Field(0.0, ge=0, le=1, description="per gene: chance of a perturbation")
    response_replace_rate: float = Field(
        0.0, ge=0, le=1, description="per gene: chance of a fresh value instead"
    )
    # weights
    weight_init_mean: float = Field(0.0, description="mean of new values")
    weight_init_stdev: float = Field(1.0, ge=0, description="stdev of new values")
    weight_init_type: str | dict[str, Any] = Field(
        "gaussian",
        description="gaussian | uniform (mean/stdev), or an initialiser name/table for the initial genomes",
    )
    weight_max_value: float = Field(30.0, description="values are clamped to at most this")
    weight_min_value: float = Field(-30.0, description="values are clamped to at least this")
    weight_mutate_power: float = Field(0.5, ge=0, description="stdev of the Gaussian perturbation")
    weight_mutate_rate: float = Field(0.8, ge=0, le=1, description="per gene: chance of a perturbation")
    weight_replace_rate: float = Field(
        0.1, ge=0, le=1, description="per gene: chance of a fresh value instead"
    )
    # enabled
    enabled_default: bool = Field(True, description="new connections start enabled")
    enabled_mutate_rate: float = Field(0.01, ge=0, le=1, description="chance enabled is redrawn 50/50")
    enabled_rate_to_true_add: float = Field(
        0.0, ge=0, le=1, description="extra redraw rate for disabled genes"
    )
    enabled_rate_to_false_add: float = Field(
        0.0, ge=0, le=1, description="extra redraw rate for enabled genes"
    )
    # structural mutation
    conn_add_prob: float = Field(0.5, ge=0, le=1, description="per child: chance of adding a connection")
    conn_delete_prob: float = Field(
        0.0, ge=0, le=1, description="0 as in the paper (NEAT never deletes); neat-python's XOR example: 0.5"
    )
    node_add_prob: float = Field(0.2, ge=0, le=1, description="per child: chance of splitting a connection")
    node_delete_prob: float = Field(
        0.0, ge=0, le=1, description="0 as in the paper; neat-python's XOR example: 0.2"
    )
    single_structural_mutation: bool = Field(False, description="at most one structural mutation per child")
    structural_mutation_surer: bool | Literal["default"] = Field(
        "default",
        description="adding an existing connection enables it; default = single_structural_mutation",
    )
    crossover_disabled_rate: float = Field(
        0.75,
        ge=0,
        le=1,
        description="a gene disabled in either parent is disabled in the child (paper: 0.75)",
    )
    # speciation
    compatibility_disjoint_coefficient: float = Field(1.0, ge=0, description="c1 = c2 of the paper")
    compatibility_excess_coefficient: float | None = Field(
        None, ge=0, description="separate c1 for excess genes; None = the disjoint coefficient"
    )
    compatibility_weight_coefficient: float = Field(0.5, ge=0, description="c3 of the paper")
    compatibility_threshold: float = Field(
        3.0, gt=0, description="distance below which genomes share a species"
    )
    target_num_species: int = Field(0, ge=0, description="0 = fixed threshold; else adjust toward this")
    compatibility_threshold_step: float = Field(0.1, gt=0, description="threshold change per generation")
    compatibility_threshold_min: float = Field(0.1, gt=0, description="the threshold never goes below this")
    speciate_against: Literal["previous", "new"] = Field(
        "new",
        description="genomes join the closest species by distance to last generation's representatives "
        "(the paper; one distance pass) or to the new ones picked from this generation (neat-python)",
    )
    # stagnation and reproduction
    species_fitness_func: Literal["max", "min", "mean", "median"] = Field(
        "max", description="species fitness for stagnation, from its members' fitness"
    )
    max_stagnation: int = Field(20, ge=1, description="generations without improvement before removal")
    species_elitism: int = Field(2, ge=0, description="best species protected from stagnation")
    elitism: int = Field(2, ge=0, description="best genomes of each species copied unchanged")
    survival_threshold: float = Field(0.2, gt=0, le=1, description="fraction of a species allowed to breed")
    min_species_size: int = Field(2, ge=1, description="offspring floor of a surviving species")
    spawn_smoothing: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="fraction of a species' current size kept in its next size (neat-python 0.5)",
    )

    @field_validator("activation_default")
    @classmethod
    def _act(cls, value: str) -> str:
        return ACTIVATIONS.canonical(value)

    @field_validator("activation_options")
    @classmethod
    def _acts(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("activation_options needs at least one name")
        return [ACTIVATIONS.canonical(v) for v in value]

    @field_validator("aggregation_default")
    @classmethod
    def _agg(cls, value: str) -> str:
        aggregation_index(value)
        return value

    @field_validator("aggregation_options")
    @classmethod
    def _aggs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("aggregation_options needs at least one name")
        for v in value:
            aggregation_index(v)
        return value

    @field_validator("weight_init_type")
    @classmethod
    def _winit(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str) and value in ("gaussian", "normal", "uniform"):
            return value
        if isinstance(value, str):
            INITIALIZERS.canonical(value)
        else:
            get_initializer(value)
        return value

    @model_validator(mode="after")
    def _ranges(self) -> NEATParams:
        for name in ("bias", "response", "weight"):
            lo, hi = getattr(self, f"{name}_min_value"), getattr(self, f"{name}_max_value")
            if lo > hi:
                raise ValueError(f"{name}_min_value = {lo} > {name}_max_value = {hi}")
        return self


@dataclass
class GenomeConfig:
    """The genome layout of one run, derived once from ``NEATParams`` (neat-python's
    ``DefaultGenomeConfig``): input/output counts, the activation names genomes index, the
    default and mutation options as indices, and the node attributes that can never differ
    under this config (skipped by distance, crossover and mutation)."""

    num_inputs: int
    num_outputs: int
    activations: list[str]
    act_default: int
    act_options: torch.Tensor
    agg_default: int
    agg_options: torch.Tensor
    output_activation: str | None
    constant: tuple[str, ...]
    surer: bool  # adding an existing connection enables it

    @classmethod
    def from_params(
        cls, p: NEATParams, num_inputs: int, num_outputs: int, output_activation: str | None
    ) -> GenomeConfig:
        names = [p.activation_default, *p.activation_options]
        output_activation = None if output_activation is None else ACTIVATIONS.canonical(output_activation)
        if output_activation is not None:
            names.append(output_activation)
        activations = list(dict.fromkeys(names))
        constant = []
        if p.response_init_stdev == 0 and p.response_mutate_rate == 0 and p.response_replace_rate == 0:
            constant.append("response")
        if len(activations) == 1:
            constant.append("activation")
        if len(set(p.aggregation_options) | {p.aggregation_default}) == 1:
            constant.append("aggregation")
        surer = p.structural_mutation_surer
        return cls(
            int(num_inputs),
            int(num_outputs),
            activations,
            activations.index(p.activation_default),
            torch.tensor([activations.index(a) for a in p.activation_options]),
            aggregation_index(p.aggregation_default),
            torch.tensor([aggregation_index(a) for a in p.aggregation_options]),
            output_activation,
            tuple(constant),
            p.single_structural_mutation if surer == "default" else bool(surer),
        )

    def is_output(self, key: torch.Tensor) -> torch.Tensor:
        return (key >= self.num_inputs) & (key < self.num_inputs + self.num_outputs)

    @property
    def first_hidden(self) -> int:
        """Node ids at or above this are hidden nodes."""
        return self.num_inputs + self.num_outputs


__all__ = ["GenomeConfig", "InitialConnection", "NEATParams"]
