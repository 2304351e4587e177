"""NEAT genomes and the phenotype that runs them (the network side of NEAT).

- ``genes``: the node and connection gene fields, ``PAD`` and the aggregations;
- ``genome``: one genome as a dict of tensors, and its JSON round trip;
- ``population``: ``NEATPopulation``, P genomes as padded tensors (what ``NEAT.ask()`` returns);
- ``compile`` / ``run``: a population lowered to slot tensors (``CompiledNEAT``) and run in
  one batched call, level by level (feed-forward) or step by step (recurrent);
- ``flat``: feed-forward sum networks (response 1, one activation) as one unpadded graph,
  level by level (what the phenotype runs when a population qualifies);
- ``phenotype``: ``NEATPhenotype`` (the population forward) and ``NEATModule`` (one genome
  as a ``torch.nn.Module``);
- ``draw``: network drawings, species plots, genome files;
- ``network``: the ``[network] type = "neat"`` registry entry (registered on import).

The evolution (innovations, distance, crossover, mutation, species) is
``neuroevo.strategies.neat``.
"""

from neuroevo.nn.neat.compile import CompiledNEAT, compile_population, node_slots, slots_of, sort_by_depth
from neuroevo.nn.neat.genes import (
    AGGREGATIONS,
    CONN_FIELDS,
    GENE_FILL,
    NODE_FIELDS,
    PAD,
    aggregation_index,
    pad_columns,
)
from neuroevo.nn.neat.genome import GENOME_FORMAT, genome_from_json, genome_to_json
from neuroevo.nn.neat.network import NEATNetworkParams, build_neat
from neuroevo.nn.neat.phenotype import CompiledChunks, NEATModule, NEATPhenotype, RolloutState
from neuroevo.nn.neat.population import NEATPopulation, as_population, cat_populations
from neuroevo.nn.neat.run import run_compiled

__all__ = [
    "AGGREGATIONS",
    "CONN_FIELDS",
    "GENE_FILL",
    "GENOME_FORMAT",
    "NODE_FIELDS",
    "PAD",
    "CompiledChunks",
    "CompiledNEAT",
    "NEATModule",
    "NEATNetworkParams",
    "NEATPhenotype",
    "NEATPopulation",
    "RolloutState",
    "aggregation_index",
    "as_population",
    "build_neat",
    "cat_populations",
    "compile_population",
    "genome_from_json",
    "genome_to_json",
    "node_slots",
    "pad_columns",
    "run_compiled",
    "slots_of",
    "sort_by_depth",
]
