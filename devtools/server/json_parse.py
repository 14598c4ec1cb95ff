"""Reading JSON request bodies the way TF Serving's rapidjson setup does.

`parse_json` accepts NaN/Infinity, ignores anything after the top-level value and reports errors
in rapidjson's words (``GetParseError_En``) with the offset; `debug_string` prints a value as
rapidjson's PrettyWriter does inside TF Serving's messages (cut at 256 bytes). The small helpers
here (`format_error`, `type_error`, base64 objects) are shared by the tensor and Example codecs.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from devtools.server.errors import InvalidArgument, bounded
from devtools.server.tensors import dtype_name

# --- parsing ---------------------------------------------------------------------------------

# Python's json messages -> rapidjson's GetParseError_En, which TF Serving puts in its errors.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
    "Invalid control character at": "Invalid encoding in string.",
}


class _TooBig(ValueError):
    pass


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # rapidjson refuses 1e400 rather than reading it as infinity
        raise _TooBig(text)
    return value


_DECODER = json.JSONDecoder(parse_float=_parse_float)


def _comma_error(text: str, pos: int) -> str:
    """rapidjson names the container a missing comma belongs to; find the innermost open one."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    if stack and stack[-1] == "{":
        return "Missing a comma or '}' after an object member."
    return "Missing a comma or ']' after an array element."


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse a request body into a JSON object, or raise InvalidArgument as TF Serving does."""
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}"
        ) from None
    start = len(text) - len(text.lstrip(" \t\n\r"))
    if start == len(text):
        raise InvalidArgument(f"JSON Parse error: The document is empty. at offset: {start}")
    try:
        # raw_decode stops after the first value, like rapidjson's kParseStopWhenDoneFlag.
        doc, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        message = _PARSE_ERRORS.get(exc.msg)
        if exc.msg == "Expecting ',' delimiter":
            message = _comma_error(text, exc.pos)
        raise InvalidArgument(
            f"JSON Parse error: {message or 'Invalid value.'} at offset: {exc.pos}"
        ) from None
    except _TooBig as exc:
        raise InvalidArgument(
            "JSON Parse error: Number too big to be stored in double. at offset: "
            f"{max(text.find(str(exc)), 0)}"
        ) from None
    except RecursionError:
        raise InvalidArgument("JSON Parse error: the document nests too deeply") from None
    if _SURROGATE_ESCAPE.search(text) and not _encodable(doc):
        raise InvalidArgument(
            "JSON Parse error: The surrogate pair in string is invalid. at offset: "
            f"{_lone_surrogate_offset(text)}"
        )
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


# rapidjson (TF Serving's parser) refuses a \uD800-\uDFFF escape that is not half of a pair
# (kParseErrorStringUnicodeSurrogateInvalid); Python's json keeps it as a lone surrogate that
# nothing downstream can encode. Only bodies holding such an escape pay for the check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_PAIR = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _encodable(value: Any) -> bool:
    """True when every string (and key) in `value` is valid Unicode without lone surrogates."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, str | dict | list))
    return True


def _lone_surrogate_offset(text: str) -> int:
    position = 0
    while match := _SURROGATE_ESCAPE.search(text, position):
        pair = _PAIR.match(text, match.start())
        if pair is None:
            return match.start()
        position = pair.end()
    return 0


# --- rapidjson-style debug strings, used inside error messages ----------------------------------

_MAX_DEBUG_BYTES = 256  # kMaxJsonDebugStringBytes


def json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def debug_string(value: Any) -> str:
    """A value as rapidjson's PrettyWriter(kFormatSingleLineArray) prints it, cut at 256 bytes."""
    out: list[str] = []
    size = 0

    def emit(token: str) -> bool:
        nonlocal size
        if size >= _MAX_DEBUG_BYTES:
            return False
        out.append(token)
        size += len(token)
        return True

    def walk(v: Any, indent: int) -> bool:
        if isinstance(v, dict):
            if not v:
                return emit("{}")
            if not emit("{"):
                return False
            for i, (key, item) in enumerate(v.items()):
                pad = "\n" + "    " * (indent + 1)
                if not emit(("," if i else "") + pad + json.dumps(key) + ": "):
                    return False
                if not walk(item, indent + 1):
                    return False
            return emit("\n" + "    " * indent + "}")
        if isinstance(v, list):
            if not emit("["):
                return False
            for i, item in enumerate(v):
                if (i and not emit(", ")) or not walk(item, indent):
                    return False
            return emit("]")
        if v is None or isinstance(v, bool):
            return emit(json.dumps(v))
        if isinstance(v, float):
            return emit("NaN" if v != v else repr(v).replace("inf", "Infinity"))
        return emit(json.dumps(v, ensure_ascii=False))

    walk(value, 0)
    return "".join(out)


def format_error(doc: Any, *parts: str) -> InvalidArgument:
    return InvalidArgument(f"JSON Value: {debug_string(doc)} " + "".join(parts))


def type_error(value: Any, dtype: int) -> InvalidArgument:
    return InvalidArgument(
        f"JSON Value: {debug_string(value)} Type: {json_type(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def signature_name_of(doc: Mapping[str, Any]) -> str:
    """The optional ``signature_name`` (FillSignature); "" when absent."""
    if "signature_name" not in doc:
        return ""
    name = doc["signature_name"]
    if not isinstance(name, str):
        raise format_error(
            doc, "not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(value: Any) -> bytes:
    if not is_b64(value):
        raise InvalidArgument(
            f"JSON Value: {debug_string(value)} not formatted correctly for base64 data"
        )
    text = value["b64"].strip()
    try:
        # absl::Base64Unescape accepts unpadded input too.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("Unable to base64 decode") from None


def error_json(message: str) -> bytes:
    """MakeJsonFromStatus: ``{"error": "<message>"}``, always encodable.

    A message may quote request text holding a lone surrogate, which UTF-8 cannot encode; it is
    then written with ASCII escapes (``\\ud800``) so the client still gets its answer.
    """
    message = bounded(message)
    text = json.dumps({"error": message}, ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps({"error": message}).encode()
