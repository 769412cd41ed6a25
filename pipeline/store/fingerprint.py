"""A store's fingerprint: what configuration its measurements belong to, compared key by key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline.errors import InputError


class StoreMismatchError(InputError):
    """A store holds measurements of another configuration."""


# sketch sizes: a store grows or shrinks to them (older stores list them)
GROWABLE = ("outer", "inner")


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """A short hash of ``fingerprint`` (sorted JSON), for file names and logs."""
    return hashlib.sha256(
        json.dumps(fingerprint, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def check_fingerprint(stored: dict[str, Any] | None, wanted: dict[str, Any], where: str) -> None:
    """Raise StoreMismatchError naming only the (dotted) keys that differ.

    Raise StoreMismatchError naming, in one line, only the (dotted) keys that differ (the growable
    sketch sizes are not compared).
    """
    if stored is None:
        return
    stored = {key: value for key, value in stored.items() if key not in GROWABLE}
    if fingerprint_hash(stored) == fingerprint_hash(wanted):
        return
    old, new = _flatten(stored), _flatten(wanted)
    diffs = "; ".join(
        f"{key}: {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key, _MISSING) != new.get(key, _MISSING)
    )
    raise StoreMismatchError(
        f"{where} holds measurements of another configuration ({diffs}); use a new output "
        "directory, or rerun with the original values to resume"
    )


_MISSING = object()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (JSON round trip first, so tuples and lists compare equal)."""
    tree = json.loads(json.dumps(tree, default=str)) if not prefix else tree
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(
            _flatten(value, f"{prefix}{key}.")
            if isinstance(value, dict) and value
            else {f"{prefix}{key}": value}
        )
    return flat
