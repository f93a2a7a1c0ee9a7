"""BERDL's JupyterHub pieces: the spawner, its pure helpers, and the hub configuration checks.

Kept apart from `berdl_init` (the home-setup program), which must not import JupyterHub or Kubernetes.
"""

__version__ = "0.1.0"
