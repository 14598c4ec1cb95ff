"""Two model-name rules: TF Serving's (any name) and the stack's (a Kubernetes DNS label)."""

from __future__ import annotations

import pytest

from contracts.rules import (
    RuleError,
    dns_label_for,
    is_model_name,
    validate_model_name,
    validate_serving_name,
)

# Names from TF Serving's own docs and test data (api_rest.md, servables/tensorflow/testdata),
# Keras application names, and names only gRPC or a percent-encoded REST route can carry.
TF_SERVING_NAMES = [
    "half_plus_two",
    "saved_model_half_plus_three",
    "saved_model_half_plus_two_2_versions",
    "ResNet50",
    "mobilenet_v3",
    "team/model:v1",
    "a b",
]


@pytest.mark.parametrize("name", TF_SERVING_NAMES)
def test_tf_serving_takes_any_name_the_stack_only_dns_labels(name: str) -> None:
    assert validate_serving_name(name) == name
    assert not is_model_name(name)
    with pytest.raises(RuleError) as caught:
        validate_model_name(name)
    message = str(caught.value)
    # Why, and what to use instead: where the rule comes from and a name that passes.
    assert "Kubernetes namespace and Service" in message and "an S3 prefix" in message
    assert "python -m devtools.serve DIR" in message
    suggestion = dns_label_for(name)
    assert suggestion is not None and validate_model_name(suggestion) == suggestion
    assert f"e.g. {suggestion!r}" in message


def test_the_suggestion_is_the_name_in_dns_label_form() -> None:
    assert dns_label_for("half_plus_two") == "half-plus-two"
    assert dns_label_for("ResNet50") == "resnet50"
    assert dns_label_for("__init__") == "init"
    assert dns_label_for("x" * 60) == "x" * 40
    assert dns_label_for("___") is None
    with pytest.raises(RuleError) as caught:
        validate_model_name("___")
    assert "e.g." not in str(caught.value)


@pytest.mark.parametrize("name", ["", None, 3])
def test_no_rule_takes_an_empty_or_non_text_name(name: object) -> None:
    with pytest.raises(RuleError, match="invalid model name"):
        validate_serving_name(name)
    with pytest.raises(RuleError, match="invalid model name"):
        validate_model_name(name)
