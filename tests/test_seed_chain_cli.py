import shutil

import torch

from neuroevo.cli import main
from neuroevo.runtime import RunDir
from neuroevo.runtime.export import load_best_module

CONFIG = """
[run]
generations = 6
checkpoint_every = 3
progress = false

[task]
name = "xor"

[network]
hidden = [4]

[strategy]
name = "seed_ga"
population_size = 40
truncation = 8
mutation_power = 0.1
elite_candidates = 3
reeval_streams = 2
"""


def test_seed_chain_best_exports_from_the_chain_alone(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "--quiet"]) == 0
    lines = RunDir(run).read_metrics()
    # the 3 elite candidates are re-evaluated on 2 extra streams each generation and counted
    assert lines[1]["evaluations"] - lines[0]["evaluations"] == 40 + 3 * 2
    evaluated, _ = load_best_module(run)
    chain_only = tmp_path / "chain_only"
    shutil.copytree(run / "best", chain_only)
    (chain_only / "params.safetensors").unlink()
    assert (chain_only / "genome.json").stat().st_size < 2000
    rebuilt, _ = load_best_module(chain_only)
    for a, b in zip(evaluated.state_dict().values(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # bit-identical to the evaluated network
    assert main(["best", str(chain_only), "--export", str(tmp_path / "w.safetensors")]) == 0
