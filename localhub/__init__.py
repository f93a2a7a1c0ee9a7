"""BERDL's whole system on one machine, for a person (scripts/local-hub) and for the end-to-end tests and
the benchmarks: the real hub, proxy, PostgreSQL and images, with stand-ins (standins/) for what cannot
run here: KBase Auth2, the Spark Cluster Manager, the governance API and Kubernetes, whose node plays
the hub's pods with podman (node.py).

A development tool: the editable install makes it importable (pyproject's dev-mode-dirs); no wheel or
image ships it. It imports nothing from tests/.
"""
