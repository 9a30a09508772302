"""Per-job random number generators.

Every training job and explanation draws from its own :class:`torch.Generator` /
:class:`numpy.random.Generator`, created from its seed. Nothing seeds, draws from or rewinds
torch's or NumPy's global generators after start-up, so two sessions of one server (two job
threads) cannot change each other's results.

Our own code passes ``generator=`` explicitly. Third-party layers do not take one (PyG's
``reset_parameters``, a dropout inside a PyG convolution); :func:`draws_from` routes their
draws to a given generator, on the calling thread only.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

# torch functions and tensor methods that take a ``generator`` keyword.
_RANDOM_FUNCTIONS = frozenset({
    torch.rand, torch.randn, torch.randint, torch.randperm, torch.rand_like, torch.randn_like,
    torch.randint_like, torch.normal, torch.bernoulli, torch.multinomial, torch.poisson,
    Tensor.uniform_, Tensor.normal_, Tensor.bernoulli_, Tensor.random_, Tensor.exponential_,
    Tensor.geometric_, Tensor.log_normal_, Tensor.cauchy_, Tensor.bernoulli, Tensor.multinomial,
}) | frozenset(  # nn.init functions dispatch to themselves: they take the generator too
    function for name, function in vars(nn.init).items()
    if name.endswith("_") and not name.startswith("_") and callable(function)
    and "generator" in inspect.signature(function).parameters)


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh :class:`torch.Generator` on ``device`` seeded with ``seed``.

    Args:
        seed (int): The job's seed.
        device (torch.device or str): Where it draws. (default: :obj:`"cpu"`)
    """
    return torch.Generator(device=device).manual_seed(int(seed))


def numpy_generator(seed: int) -> np.random.Generator:
    """A fresh :func:`numpy.random.default_rng` generator seeded with ``seed``."""
    return np.random.default_rng(int(seed))


def masked_dropout(x: Tensor, p: float, training: bool,
                   generator: torch.Generator | None) -> Tensor:
    """Inverted dropout whose mask is drawn from ``generator``: each entry is zeroed with
    probability ``p`` and the survivors scaled by :math:`1/(1-p)`.

    Args:
        x (Tensor): Input.
        p (float): Drop probability.
        training (bool): Whether to drop at all (as :func:`torch.nn.functional.dropout`).
        generator (torch.Generator, optional): Source of the mask (global RNG when ``None``).
    """
    if not training or p <= 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    keep = torch.rand(x.shape, device=x.device, generator=generator) >= p
    return x * keep / (1.0 - p)


class _DrawFrom(TorchFunctionMode):
    """Gives ``generator`` to every random draw made without one (see :func:`draws_from`)."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _RANDOM_FUNCTIONS and kwargs.get("generator") is None:
            kwargs["generator"] = self.generator
        elif func is F.dropout:
            return _generator_dropout(self.generator, *args, **kwargs)
        return func(*args, **kwargs)


def _generator_dropout(generator: torch.Generator, input: Tensor, p: float = 0.5,
                       training: bool = True, inplace: bool = False) -> Tensor:
    out = masked_dropout(input, p, training, generator)
    if inplace and out is not input:
        return input.copy_(out)
    return out


@contextlib.contextmanager
def draws_from(generator: torch.Generator) -> Iterator[torch.Generator]:
    """Inside the block, on this thread only, every torch random draw made without an explicit
    generator (``torch.rand``, ``Tensor.uniform_``, :mod:`torch.nn.init`, PyG's initialisers,
    :func:`torch.nn.functional.dropout` ...) draws from ``generator`` instead of the global one.

    Args:
        generator (torch.Generator): The job's generator (on the device the draws happen on).
    """
    with _DrawFrom(generator):
        yield generator


def private_draws(seed: int = 0) -> contextlib.AbstractContextManager[torch.Generator]:
    """:func:`draws_from` a fresh generator seeded with ``seed``: for building layers whose
    initial weights are overwritten right after (loaded or re-initialised), so that building
    them leaves the global generator untouched.

    Args:
        seed (int): Seed of the private generator. (default: :obj:`0`)
    """
    return draws_from(torch_generator(seed))


def reset_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise ``module`` (its own ``reset_parameters()``, with the usual distributions)
    drawing from ``generator``.

    Args:
        module (torch.nn.Module): A module with a ``reset_parameters()`` method.
        generator (torch.Generator): The job's generator.
    """
    with draws_from(generator):
        module.reset_parameters()


def draws_without_generator(module: nn.Module) -> bool:
    """Whether ``module`` holds a layer that draws at random in training but takes no job
    generator (:class:`torch.nn.Dropout`, or a layer from another library with a positive
    ``dropout`` rate, such as PyG's ``GATv2Conv``); such a forward pass needs
    :func:`draws_from` (which costs some Python overhead per operation).

    Args:
        module (torch.nn.Module): The model.
    """
    for sub in module.modules():
        if hasattr(sub, "generator"):
            continue
        rate = sub.p if isinstance(sub, nn.modules.dropout._DropoutNd) else \
            getattr(sub, "dropout", 0.0)
        if isinstance(rate, (int, float)) and rate > 0:
            return True
    return False


def attach_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Give ``generator`` to every submodule that draws at random in training (those declaring
    a ``generator`` attribute); ``None`` detaches it again.

    Args:
        module (torch.nn.Module): The model.
        generator (torch.Generator, optional): The job's generator.
    """
    for sub in module.modules():
        if hasattr(sub, "generator"):
            sub.generator = generator


__all__ = ["attach_generator", "draws_from", "draws_without_generator", "masked_dropout",
           "numpy_generator", "private_draws", "reset_parameters", "torch_generator"]
