"""The input checks of a cluster description (simulators/clusters/*.yaml), before it is priced.

A cluster with no nodes, a negative or zero bandwidth, a negative latency or compute rate gives
negative or zero times, and a string where a number goes gives a traceback; each is refused here with
one line naming the key. simulators/perfmodel.py's load_cluster calls `check_cluster` on what it reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from thinwire.algorithms.comm import ThinwireError

# key path -> (kind, lowest allowed value, whether that value itself is allowed)
NUMBERS = {
    ("nodes",): (int, 1, True),
    ("gpus_per_node",): (int, 1, True),
    ("sustained_tflops",): (float, 0.0, False),
    ("tiers", "intra", "bandwidth_gbps"): (float, 0.0, False),
    ("tiers", "intra", "latency_us"): (float, 0.0, True),
    ("tiers", "inter", "bandwidth_gbps"): (float, 0.0, False),
    ("tiers", "inter", "latency_us"): (float, 0.0, True),
}


def check_cluster(d: Any, path: Path | str) -> None:
    """Refuse a cluster description that is not a mapping, lacks a key, or has a number out of range."""
    if not isinstance(d, dict):
        raise ThinwireError(f"cluster file {path}: a cluster is a mapping of name, nodes, gpus_per_node, "
                            f"sustained_tflops and tiers, got {type(d).__name__}")
    if not isinstance(d.get("name"), str) or not d["name"]:
        raise ThinwireError(f"cluster file {path}: name must be a non-empty string")
    for keys, (kind, low, inclusive) in NUMBERS.items():
        where, value = ".".join(keys), d
        for k in keys:
            if not isinstance(value, dict) or k not in value:
                raise ThinwireError(f"cluster file {path}: {where} is missing")
            value = value[k]
        if isinstance(value, dict) and "value" in value:  # a fact, {value, label, source}: its value
            value = value["value"]
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not number or (kind is int and value != int(value)):
            raise ThinwireError(f"cluster file {path}: {where} must be a finite {'integer' if kind is int else 'number'}"
                                f", got {value!r}")
        if value < low or (value == low and not inclusive):
            raise ThinwireError(f"cluster file {path}: {where} must be {'>=' if inclusive else '>'} {low:g}, "
                                f"got {value!r}")
    for label, rate in (d.get("codec_values_per_s") or {}).items():
        rate = rate["value"] if isinstance(rate, dict) and "value" in rate else rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0 or not math.isfinite(rate):
            raise ThinwireError(f"cluster file {path}: codec_values_per_s.{label} must be a positive number, "
                                f"got {rate!r}")
