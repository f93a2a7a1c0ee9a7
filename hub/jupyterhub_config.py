"""BERDL's JupyterHub configuration: `jupyterhub -f hub/jupyterhub_config.py`.

Everything comes from the environment (a Kubernetes Secret and the hub Deployment), checked together
before the hub binds a port: every problem is printed in one message and the hub exits with status 2.
The checks and the mapping live in `berdl_hub.hub_config`, where they are tested without a hub.

Operator settings beyond these: a YAML tree of traitlet values nested by class (BERDL_HUB_CONFIG_TREE,
merged first), and, for what only code can say, a Python file named by BERDL_HUB_EXTRA_CONFIG, run last
with the same `c`. Precedence, the later winning: the tree, the environment, the Python file.
"""

import sys

from berdl_hub import hub_config, server_access

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (provided by JupyterHub when it loads this file)

try:
    settings = hub_config.load()
    hub_config.preflight(settings)
except hub_config.HubConfigError as error:
    print(f"[berdl-hub] {error}", file=sys.stderr, flush=True)
    sys.exit(2)

hub_config.apply(c, settings)
hub_config.forget_secrets()

if settings.extra_config:
    # Run in this namespace rather than with load_subconfig: the operator's file then sees (and can
    # .append to) the lists set above; a subconfig would replace them, dropping the idle culler.
    with open(settings.extra_config) as extra:
        exec(
            compile(extra.read(), settings.extra_config, "exec"), {"c": c, "__file__": settings.extra_config}
        )

# Each user's servers ask for a scope only that user holds (admins do not open users' servers), defined
# once the operator's roles and scopes are in.
server_access.give_users_their_servers(c)

# Settings that only make sense together (start_timeout against the bounded steps of a start, uid None
# against a berdl-init that starts as root), checked once the operator's settings are in.
if c.JupyterHub.spawner_class == "berdl":
    from berdl_hub.spawner import BERDLSpawner, SpawnerConfigError
    from berdl_hub.spawner_settings import notebook_settings_missing

    # The notebook image cannot work without its services' endpoints; the hub can, so it only says so,
    # once, here (not at every spawn).
    missing = notebook_settings_missing(BERDLSpawner, c)
    if missing:
        print(
            f"[berdl-hub] warning: user pods will lack settings the notebook needs: {', '.join(missing)} "
            "(set them in the hub's environment, hub-settings.env; deploy/README.md, Settings)",
            file=sys.stderr,
            flush=True,
        )
    try:
        BERDLSpawner.check_config(c)
    except SpawnerConfigError as error:
        print(f"[berdl-hub] {error}", file=sys.stderr, flush=True)
        sys.exit(2)
