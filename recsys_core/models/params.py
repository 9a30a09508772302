"""Model hyper-parameters given as text (``KEY=VALUE``), parsed by the constructor's types.

The CLI's ``train --param KEY=VALUE`` goes through :func:`parse_model_params`: the key must be
a constructor argument of the chosen model, and the value is parsed by that argument's
annotation (or, without one, by the type of its default):

* ``bool``: ``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case);
* ``int`` and ``float``: Python number syntax (``1e-3``, ``10``);
* ``str``: the text as it is;
* a sequence of numbers or strings: comma-separated (``0.1,0.2,0.5``);
* ``None``: ``none`` (any case), only where the argument is optional (``X | None``).

Arguments whose type cannot be written as text (tensors, encoder objects) are refused.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RecScopeError

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
NONE_WORDS = frozenset({"none"})
_SCALARS = (bool, int, float, str)
_SEQUENCE_ORIGINS = (list, tuple, collections.abc.Sequence)


class ModelParamError(RecScopeError):
    """A ``KEY=VALUE`` hyper-parameter names no argument of the model, or its value does not
    parse as the argument's type."""


@dataclass(frozen=True)
class ParamSpec:
    """How one constructor argument is written as text.

    Args:
        name (str): The constructor argument.
        kind (type, optional): ``bool``, ``int``, ``float`` or ``str``; ``None`` when the
            argument cannot be given as text.
        sequence (bool): A comma-separated list of ``kind``. (default: :obj:`False`)
        optional (bool): ``none`` gives :obj:`None`. (default: :obj:`False`)
        default (Any): The constructor's default. (default: :obj:`None`)
    """

    name: str
    kind: type | None
    sequence: bool = False
    optional: bool = False
    default: Any = None

    @property
    def settable(self) -> bool:
        return self.kind is not None

    def describe(self) -> str:
        """The expected type in words: ``int``, ``float or none``, ``list of float`` ..."""
        if self.kind is None:
            return "not settable as text"
        text = f"list of {self.kind.__name__}" if self.sequence else self.kind.__name__
        if self.kind is bool:
            text = "bool (true/false)"
        return f"{text} or none" if self.optional else text

    def parse(self, text: str) -> Any:
        """The value of ``text`` for this argument.

        Raises:
            ValueError: ``text`` is not a value of this argument's type.
        """
        if self.kind is None:
            raise ValueError("this argument cannot be given as text")
        stripped = text.strip()
        if self.optional and stripped.lower() in NONE_WORDS:
            return None
        if self.sequence:
            parts = [p.strip() for p in stripped.split(",") if p.strip()]
            if not parts:
                raise ValueError("an empty list")
            return [_parse_scalar(self.kind, p) for p in parts]
        return _parse_scalar(self.kind, text if self.kind is str else stripped)


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The arguments of ``cls``'s constructor (``self`` left out), their annotations resolved
    to types where they resolve.

    A trainable model's ``**train_options: Unpack[TrainOptions]`` stands for one keyword-only
    argument per key of :class:`~recsys_core.training.TrainOptions`, typed as there, with the
    model's default (:meth:`EmbeddingRecommender.train_option_defaults
    <recsys_core.models.embedding.EmbeddingRecommender.train_option_defaults>`), so the CLI, the
    app and tuning see every setting the model takes. Any other ``**kwargs`` stays as it is.

    Args:
        cls (type): A model class.
    """
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve: leave them all as written
        hints = {}
    out: dict[str, inspect.Parameter] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        hint = hints.get(name, param.annotation)
        if param.kind is inspect.Parameter.VAR_KEYWORD and typing.get_origin(hint) is typing.Unpack:
            defaults = cls.train_option_defaults()
            for key, kind in typing.get_type_hints(typing.get_args(hint)[0]).items():
                out[key] = inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY,
                                             default=defaults[key], annotation=kind)
        else:
            out[name] = param.replace(annotation=hint)
    return out


def model_param_specs(model_name: str) -> dict[str, ParamSpec]:
    """One :class:`ParamSpec` per constructor argument of the model registered as
    ``model_name``, in signature order.

    Args:
        model_name (str): A name of :data:`~recsys_core.models.MODEL_REGISTRY`.

    Raises:
        ModelNotAvailableError: Unknown model name.
    """
    from . import get_model_class, model_arguments

    parameters = constructor_parameters(get_model_class(model_name))
    specs = {}
    for name in model_arguments(model_name):
        param = parameters[name]
        default = None if param.default is inspect.Parameter.empty else param.default
        annotation = param.annotation
        if annotation is inspect.Parameter.empty or isinstance(annotation, str):
            annotation = None  # none, or one that does not resolve: the default's type says it
        specs[name] = _spec(name, annotation, default)
    return specs


def parse_model_params(model_name: str, assignments: Sequence[str]) -> dict[str, Any]:
    """Constructor arguments from ``KEY=VALUE`` texts, parsed by the argument's type.

    Keys may use ``-`` for ``_`` (``item-item=false``). Example::

        >>> parse_model_params("gnn-llm", ["item_item=false", "lr=5e-3"])
        {'item_item': False, 'lr': 0.005}

    Args:
        model_name (str): A name of :data:`~recsys_core.models.MODEL_REGISTRY`.
        assignments (Sequence[str]): ``KEY=VALUE`` texts.

    Returns:
        ``{argument: value}`` in the order given.

    Raises:
        ModelParamError: A text without ``=``, an unknown key, a key given twice, an argument
            that cannot be given as text, or a value that does not parse; the message names
            the key, the expected type and the valid keys.
        ModelNotAvailableError: Unknown model name.
    """
    specs = model_param_specs(model_name)
    values: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = str(assignment).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ModelParamError(
                f"--param '{assignment}' is not KEY=VALUE (e.g. --param item_item=false). "
                + valid_keys_text(model_name, specs))
        spec = specs.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, [s for s in specs if specs[s].settable], n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ModelParamError(
                f"--param {key}: the {model_name} model has no hyper-parameter '{key}'.{hint} "
                + valid_keys_text(model_name, specs))
        if not spec.settable:
            raise ModelParamError(
                f"--param {key}: this argument of the {model_name} model cannot be given as "
                "text. " + valid_keys_text(model_name, specs))
        if key in values:
            raise ModelParamError(f"--param {key} is given twice; give it once.")
        try:
            values[key] = spec.parse(text)
        except ValueError as exc:
            raise ModelParamError(
                f"--param {key}={text!r}: expected {spec.describe()} ({exc}). "
                + valid_keys_text(model_name, specs)) from None
    return values


def valid_keys_text(model_name: str, specs: dict[str, ParamSpec] | None = None) -> str:
    """``"Valid keys for gnn-llm: embedding_dim (int), ..."`` (settable arguments only).

    Args:
        model_name (str): A name of :data:`~recsys_core.models.MODEL_REGISTRY`.
        specs (dict, optional): Its specs, when already computed.
            (default: :func:`model_param_specs`)
    """
    specs = model_param_specs(model_name) if specs is None else specs
    keys = [f"{s.name} ({s.describe()})" for s in specs.values() if s.settable]
    return f"Valid keys for {model_name}: {', '.join(keys) or 'none'}."


def _spec(name: str, annotation: Any, default: Any) -> ParamSpec:
    if annotation is None:  # no annotation: the default's type says it
        if default is None:
            return ParamSpec(name, None, default=default)
        kind = type(default)
        return ParamSpec(name, kind if kind in _SCALARS else None, default=default)
    members = _union_members(annotation)
    optional = type(None) in members
    members = [m for m in members if m is not type(None)]
    if len(members) == 1:
        member = members[0]
        if member in _SCALARS:
            return ParamSpec(name, member, optional=optional, default=default)
        origin = typing.get_origin(member)
        args = [a for a in typing.get_args(member) if a is not Ellipsis]
        if origin in _SEQUENCE_ORIGINS and len(set(args)) == 1 and args[0] in _SCALARS:
            return ParamSpec(name, args[0], sequence=True, optional=optional, default=default)
    return ParamSpec(name, None, optional=optional, default=default)


def _union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _parse_scalar(kind: type, text: str) -> Any:
    if kind is bool:
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"got {text!r}; use true/false, 1/0, yes/no or on/off")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"got {text!r}, not a whole number") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"got {text!r}, not a number") from None
    return text
