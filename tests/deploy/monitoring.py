"""What deploy/monitoring's rules and dashboard may name: the series the hub serves on /hub/metrics
(JupyterHub's and BERDL's, from the registry they share), and the series a PromQL expression names."""

from __future__ import annotations

import re

AGGREGATIONS = {
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "and", "or", "unless", "bool", "offset",
}  # fmt: skip
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def series_named(expression: str) -> set[str]:
    """The series names a PromQL expression reads (not its functions, label names, or durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = _GROUPING.sub(" ", text)
    return {name for name in _NAME.findall(text) if name not in AGGREGATIONS}


def hub_series() -> set[str]:
    """Every series name the hub can serve: each metric of the registry JupyterHub serves at /hub/metrics
    (JupyterHub's own and berdl_hub.metrics'), with the names of its samples (`_total`, `_bucket`...)."""
    import berdl_hub.metrics  # noqa: F401  (registers BERDL's metrics, as the hub's import does)
    import jupyterhub.metrics  # noqa: F401
    from prometheus_client import REGISTRY

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names
