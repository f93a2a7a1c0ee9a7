"""The BERDL spawner, importable by this path as the design names it.

The code lives in the installable package `berdl_hub` (hub/berdl_hub/), so the hub image gets it with
`pip install`; JupyterHub also finds it as `c.JupyterHub.spawner_class = "berdl"` (entry point).
"""

from berdl_hub.spawner import BERDLSpawner, SpawnRefused

__all__ = ["BERDLSpawner", "SpawnRefused"]
