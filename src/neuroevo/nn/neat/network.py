"""``[network] type = "neat"``: the registry entry that builds a NEAT phenotype from a config.

The keys here say how genomes are run; the genome and its evolution are configured in
``[strategy]`` (``neuroevo.strategies.neat.NEATParams``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from neuroevo.core.contracts import PopulationKind
from neuroevo.nn.activations import ACTIVATIONS
from neuroevo.nn.neat.phenotype import NEATPhenotype
from neuroevo.nn.networks import NetworkParams, register_network


class NEATNetworkParams(NetworkParams):
    """``[network] type = "neat"``: how genomes are run (the genome knobs live in ``[strategy]``)."""

    recurrent_steps: int = Field(1, ge=1, description="updates per call for recurrent genomes")
    stateful: bool = Field(False, description="recurrent node values persist between calls (control)")
    chunk_size: int = Field(0, ge=0, description="genomes compiled and run at a time; 0 = all")
    output_activation: str | None = Field(
        None, description="fix the output nodes' activation; None = evolved (activation_default)"
    )

    @field_validator("output_activation")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None:
            ACTIVATIONS.canonical(value)
        return value


def build_neat(
    params: NEATNetworkParams,
    in_features: int,
    out_features: int,
    default_output_activation: str = "identity",
    **kw: Any,
) -> NEATPhenotype:
    """Size a NEAT phenotype from the task (the task's default output activation is not imposed)."""
    return NEATPhenotype(
        in_features,
        out_features,
        recurrent_steps=params.recurrent_steps,
        stateful=params.stateful,
        chunk_size=params.chunk_size,
        output_activation=params.output_activation,
    )


def neat_config(net: Any) -> dict[str, Any] | None:
    """``[network]`` keys of a ``NEATPhenotype`` (a run started from Python writes them)."""
    if type(net) is not NEATPhenotype:
        return None
    keys = {"recurrent_steps": net.recurrent_steps, "stateful": net.stateful, "chunk_size": net.chunk_size}
    return keys if net.output_activation is None else {**keys, "output_activation": net.output_activation}


register_network(
    "neat",
    NEATNetworkParams,
    build_neat,
    from_spec=NEATPhenotype.from_spec,
    runs=(PopulationKind.NEAT,),
    description="NEAT genomes compiled to padded tensors (topology evolves)",
    config_of=neat_config,
)

__all__ = ["NEATNetworkParams", "build_neat", "neat_config"]
