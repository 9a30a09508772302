"""``KEY=VALUE`` model hyper-parameters parsed by the constructor's types
(:mod:`recsys_core.models.params`)."""

from __future__ import annotations

import pytest

from recsys_core.errors import RecScopeError
from recsys_core.models import MODEL_REGISTRY, ModelNotAvailableError, model_arguments
from recsys_core.models.params import (
    ModelParamError,
    constructor_parameters,
    model_param_specs,
    parse_model_params,
    valid_keys_text,
)


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("NO", False),
    ("on", True), ("off", False)])
def test_bool_words(text, expected):
    assert parse_model_params("gnn-llm", [f"item_item={text}"]) == {"item_item": expected}


def test_numbers_strings_and_order_are_kept():
    params = parse_model_params("gnn-llm", ["embedding_dim=128", "lr=5e-3", "conv=gatv2",
                                            "graph_filter=false"])
    assert params == {"embedding_dim": 128, "lr": 0.005, "conv": "gatv2", "graph_filter": False}
    assert list(params) == ["embedding_dim", "lr", "conv", "graph_filter"]
    assert isinstance(params["embedding_dim"], int) and isinstance(params["lr"], float)


def test_none_only_where_optional():
    assert parse_model_params("gnn-llm", ["item_item_lambda=none"]) == {"item_item_lambda": None}
    assert parse_model_params("gnn-llm", ["time_limit=None"]) == {"time_limit": None}
    with pytest.raises(ModelParamError, match="embedding_dim.*expected int"):
        parse_model_params("gnn-llm", ["embedding_dim=none"])


def test_dashes_in_keys_and_a_sequence_argument():
    assert parse_model_params("gnn-llm", ["item-item=false"]) == {"item_item": False}
    assert parse_model_params("text-pop", ["weight_grid=0.1, 0.5,1"]) == {
        "weight_grid": [0.1, 0.5, 1.0]}


def test_unknown_key_names_it_suggests_and_lists_the_valid_keys():
    with pytest.raises(ModelParamError) as info:
        parse_model_params("gnn-llm", ["item_itme=false"])
    message = str(info.value)
    assert "item_itme" in message and "Did you mean 'item_item'" in message
    assert "Valid keys for gnn-llm:" in message and "embedding_dim (int)" in message
    assert "item_item (bool (true/false))" in message and "lr (float)" in message
    assert isinstance(info.value, RecScopeError)  # the CLI maps it to exit 2


@pytest.mark.parametrize("assignment, words", [
    ("embedding_dim=big", ["embedding_dim", "expected int", "'big'"]),
    ("lr=fast", ["lr", "expected float", "not a number"]),
    ("item_item=maybe", ["item_item", "expected bool", "true/false"]),
    ("weight_grid=a,b", ["weight_grid", "list of float"]),
])
def test_bad_values_name_the_key_and_the_type(assignment, words):
    model = "text-pop" if assignment.startswith("weight_grid") else "gnn-llm"
    with pytest.raises(ModelParamError) as info:
        parse_model_params(model, [assignment])
    message = str(info.value)
    assert all(word in message for word in words), message
    assert f"Valid keys for {model}:" in message


@pytest.mark.parametrize("assignment, words", [
    ("item_item", ["not KEY=VALUE"]),
    ("=3", ["not KEY=VALUE"]),
    ("encoder=x", ["cannot be given as text"]),
])
def test_malformed_and_unsettable(assignment, words):
    with pytest.raises(ModelParamError) as info:
        parse_model_params("gnn-llm", [assignment])
    assert all(word in str(info.value) for word in words)


def test_a_key_given_twice_is_refused():
    with pytest.raises(ModelParamError, match="given twice"):
        parse_model_params("ease", ["reg_lambda=10", "reg-lambda=20"])


def test_unknown_model():
    with pytest.raises(ModelNotAvailableError):
        parse_model_params("nope", ["a=1"])


@pytest.mark.parametrize("model", list(MODEL_REGISTRY))
def test_every_model_argument_has_a_spec_and_its_default_round_trips(model):
    specs = model_param_specs(model)
    assert list(specs) == model_arguments(model)
    for spec in specs.values():
        if not spec.settable or spec.default is None:
            continue
        text = (",".join(map(str, spec.default)) if spec.sequence else str(spec.default))
        assert spec.parse(text) == spec.default, (model, spec.name)
    assert valid_keys_text(model).startswith(f"Valid keys for {model}:")


@pytest.mark.parametrize("model, own", [("mf", {"lr": 5e-3}), ("lightgcn", {"lr": 5e-3}),
                                        ("gnn-llm", {"epochs": 300, "lr": 1e-2,
                                                     "hide_targets": True, "refit": True})])
def test_trainable_models_list_every_training_option_with_their_own_defaults(model, own):
    """``**train_options: Unpack[TrainOptions]`` reads as one typed keyword per option, with
    the default the model really uses; unknown keywords are still refused by name."""
    import dataclasses

    from recsys_core.models import create_model, get_model_class

    params = constructor_parameters(get_model_class(model))
    assert "train_options" not in params and "embedding_dim" in params
    used = dataclasses.asdict(create_model(model).train_config)
    assert {key: params[key].default for key in used} == used
    assert all(params[key].default == value for key, value in own.items())
    assert params["lr"].annotation is float
    assert parse_model_params(model, ["max_grad_norm=none", "epochs=3"]) == {
        "max_grad_norm": None, "epochs": 3}
    with pytest.raises(ModelNotAvailableError, match="no_such_option"):
        create_model(model, no_such_option=1)
