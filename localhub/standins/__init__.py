"""Stand-ins for what cannot run on one machine, speaking the real HTTP APIs on 127.0.0.1: KBase Auth2
with its login page, the Spark Cluster Manager, the governance API, the Kubernetes API (kmock's emulator)
and a kubelet, and what a spawner needs of JupyterHub when it runs without one.

The local stack, the tests and the benchmarks all use these; `faults` adds the variants that fail on
purpose.
"""
