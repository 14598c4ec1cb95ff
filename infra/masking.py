"""Credential-shaped values out of everything synth writes. Pure.

synth's output is posted on pull requests and kept as a CI artifact, so no credential may reach
it, whatever a plan (this branch's or a base written by an older synth) carries. The capture
already masks what the program marked secret; these rules are the second net:

- a string under a key that names a credential (``password``, ``apiKey``, ``token``,
  ``clientSecret``, ``privateKey``, ``kubeconfig`` ...), matched on the key with ``_``/``-``
  removed and case ignored; keys that name *where* a credential lives rather than the credential
  (``...Arn``, ``...Name``, ``...Id``, ``...Ref``, ``...Path``, ``...File``) are left alone;
- the ``value`` of an environment variable (``{"name": ..., "value": ...}``) whose name names a
  credential (``DB_PASSWORD``, ``API_KEY``, ``AWS_SECRET_ACCESS_KEY``);
- the data of a Kubernetes Secret, every key;
- a Pulumi secure config value (``{"secure": "v1:..."}``);
- any string that looks like a credential wherever it is: an AWS access key id, a PEM private
  key, a GitHub or Slack token, a JWT.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SECRET = "[secret]"
_CREDENTIAL_WORDS = re.compile(
    r"password|passwd|passphrase|secret|token|apikey|accesskey|privatekey|credential|"
    r"kubeconfig|sessionkey|bearer"
)
_LOCATION_SUFFIX = re.compile(r"(arn|arns|name|names|id|ids|ref|path|file|type|kind|ttl)$")
_CREDENTIAL_VALUE = re.compile(
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"  # AWS access key id
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # a JWT
)
# Keys that contain a credential word but hold a setting (EC2 metadata options: IMDSv2 required).
_SETTINGS = frozenset({"httptokens"})
SECRET_KINDS = frozenset({"kubernetes:core/v1:Secret"})


def _plain(key: str) -> str:
    return re.sub(r"[_\-.\s]", "", key).lower()


def names_a_credential(key: str) -> bool:
    plain = _plain(key)
    if plain in _SETTINGS or _LOCATION_SUFFIX.search(plain):
        return False
    return bool(_CREDENTIAL_WORDS.search(plain))


def looks_like_a_credential(text: str) -> bool:
    return bool(_CREDENTIAL_VALUE.search(text))


def mask_text(text: str) -> str:
    """``text`` with every credential-shaped part replaced."""
    return _CREDENTIAL_VALUE.sub(SECRET, text)


def mask(value: Any, key: str = "") -> Any:
    """``value`` with every credential masked (a new value; the input is left as it is)."""
    if isinstance(value, str):
        if key and names_a_credential(key):
            return SECRET
        return mask_text(value)
    if isinstance(value, Mapping):
        if set(value) == {"secure"}:
            return SECRET
        env_name = value.get("name")
        out = {}
        for k, v in value.items():
            if (
                k == "value"
                and isinstance(env_name, str)
                and isinstance(v, str)
                and names_a_credential(env_name)
            ):
                out[k] = SECRET
            else:
                out[k] = mask(v, str(k))
        return out
    if isinstance(value, list | tuple):
        return [mask(v, key) for v in value]
    return value


def mask_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A ``resources.json`` record with its inputs masked, a Secret's data wholly."""
    inputs = mask(record.get("inputs") or {})
    if record.get("type") in SECRET_KINDS:
        for field in ("data", "stringData"):
            if isinstance(inputs.get(field), dict):
                inputs[field] = {k: SECRET for k in inputs[field]}
    return {**record, "inputs": inputs}
