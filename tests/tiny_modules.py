"""A user's nn.Module factory, for tests of ``[network] type = "module"``."""

import torch


def mlp(in_features: int, out_features: int) -> torch.nn.Module:
    """in -> 4 -> out, tanh in between: sized by the task."""
    return torch.nn.Sequential(
        torch.nn.Linear(in_features, 4), torch.nn.Tanh(), torch.nn.Linear(4, out_features)
    )
