"""The compile-or-eager wrapper: same results, one warning line when the backend fails, env switch."""

import logging

import pytest
import torch

from neuroevo.core import compile as nc


def _step(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x * 2.0 + 1.0).sum(dim=1)


def test_disabled_by_environment_returns_the_eager_function(monkeypatch):
    monkeypatch.setenv("NEUROEVO_COMPILE", "0")
    assert nc.maybe_compile(_step, name="step") is _step


def test_backend_failure_falls_back_once_with_one_warning(monkeypatch, caplog):
    calls = []

    def broken_compile(fn, **options):
        def run(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\nmore lines")

        return run

    monkeypatch.setenv("NEUROEVO_COMPILE", "1")
    monkeypatch.setattr(nc.torch, "compile", broken_compile)
    step = nc.maybe_compile(_step, name="cartpole rollout")
    x = torch.randn(5, 3)
    with caplog.at_level(logging.WARNING, logger="neuroevo.compile"):
        first, second = step(x), step(x)
    assert torch.equal(first, _step(x)) and torch.equal(second, _step(x))
    assert len(calls) == 1  # the compiled path is not retried after it failed
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "cartpole rollout" in lines[0] and "\n" not in lines[0]


def test_caller_errors_propagate_without_a_compile_warning(monkeypatch, caplog):
    monkeypatch.setenv("NEUROEVO_COMPILE", "1")
    monkeypatch.setattr(nc.torch, "compile", lambda fn, **options: fn)
    step = nc.maybe_compile(_step, name="step")
    with caplog.at_level(logging.WARNING, logger="neuroevo.compile"), pytest.raises(IndexError):
        step(torch.randn(5))  # dim=1 does not exist: the caller's error
    assert not caplog.records


def test_missing_compiler_warns_and_runs_eager(monkeypatch, caplog):
    monkeypatch.setenv("NEUROEVO_COMPILE", "1")
    monkeypatch.setattr(nc.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="neuroevo.compile"):
        step = nc.maybe_compile(_step, name="step")
    assert step is _step
    assert "no C++ compiler" in caplog.records[0].getMessage()


@pytest.mark.slow
def test_real_compile_matches_eager(monkeypatch):
    monkeypatch.setenv("NEUROEVO_COMPILE", "1")
    step = nc.maybe_compile(_step, name="step", dynamic=False)
    x = torch.randn(64, 8, dtype=torch.float64)
    torch.testing.assert_close(step(x), _step(x))
