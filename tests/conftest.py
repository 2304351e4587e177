import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _one_thread():
    """Test workloads are small: one intra-op thread is faster for them and never oversubscribes CI."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def gym_start_states(env_id: str, seeds: list[int], dtype: torch.dtype | None = None) -> torch.Tensor:
    """The physical start state Gymnasium's ``env_id`` resets to for each seed (for comparing
    a native env started from the same states)."""
    import gymnasium as gym

    states = []
    for seed in seeds:
        env = gym.make(env_id)
        env.reset(seed=seed)
        states.append(torch.tensor(env.unwrapped.state, dtype=dtype))
    return torch.stack(states)
