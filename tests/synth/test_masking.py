"""What `infra.masking` hides and what it leaves readable."""

from __future__ import annotations

from infra.masking import SECRET, mask, mask_record


def test_credential_keys_are_masked_and_where_a_credential_lives_is_not() -> None:
    value = {
        "password": "p",
        "apiKey": "k",
        "api_key": "k",
        "clientSecret": "s",
        "authorizationToken": "t",
        "kubeconfig": "c",
        "dockerHubCredentialArn": "arn:aws:secretsmanager:eu-west-1:1:secret:x",
        "secretName": "my-secret",
        "httpTokens": "required",
        "automountServiceAccountToken": False,
    }
    masked = mask(value)
    for key in (
        "password",
        "apiKey",
        "api_key",
        "clientSecret",
        "authorizationToken",
        "kubeconfig",
    ):
        assert masked[key] == SECRET, key
    for key in (
        "dockerHubCredentialArn",
        "secretName",
        "httpTokens",
        "automountServiceAccountToken",
    ):
        assert masked[key] == value[key], key


def test_env_values_named_like_credentials_are_masked() -> None:
    env = [
        {"name": "DB_PASSWORD", "value": "x"},
        {"name": "GITHUB_TOKEN", "value": "y"},
        {"name": "CUDA_CACHE_PATH", "value": "/tmp/cuda-cache"},
    ]
    assert [e["value"] for e in mask(env)] == [SECRET, SECRET, "/tmp/cuda-cache"]


def test_credential_shaped_values_are_masked_anywhere() -> None:
    text = "key AKIAABCDEFGHIJKLMNOP and -----BEGIN RSA PRIVATE KEY----- end"
    assert mask({"note": text})["note"] == f"key {SECRET} and {SECRET} end"
    assert mask(["ghp_" + "a" * 36]) == [SECRET]


def test_secure_config_values_and_secret_data() -> None:
    assert mask({"tfserving-eks:x": {"secure": "v1:abc"}}) == {"tfserving-eks:x": SECRET}
    record = {
        "type": "kubernetes:core/v1:Secret",
        "inputs": {"data": {"anything": "dmFsdWU="}, "metadata": {"name": "s"}},
    }
    assert mask_record(record)["inputs"]["data"] == {"anything": SECRET}
    assert record["inputs"]["data"] == {"anything": "dmFsdWU="}  # the input is left as it is
