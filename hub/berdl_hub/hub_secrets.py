"""Where the hub's secrets come from: one file per key in a mounted Secret, else the environment.

In Kubernetes the Secret `berdl-hub-secrets` is mounted as a folder (deploy/hub-deployment.yaml), so no
secret is ever in the hub's process environment: `/proc/<hub>/environ` keeps the environment a process
started with, whatever Python later removes from `os.environ`, and any process of the same user can
read it. The environment stays as the fallback for local runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: The setting that names the folder; each secret is the file named after its variable.
SECRETS_DIR_VARIABLE = "BERDL_HUB_SECRETS_DIR"
DEFAULT_SECRETS_DIR = "/etc/berdl/hub-secrets"
SECRET_NAMES = ("JUPYTERHUB_COOKIE_SECRET", "JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN", "PGPASSWORD")
#: Secrets the hub does without: Prometheus's token for /hub/metrics (hub_config's berdl-prometheus).
OPTIONAL_SECRET_NAMES = ("BERDL_HUB_METRICS_TOKEN",)
ALL_SECRET_NAMES = SECRET_NAMES + OPTIONAL_SECRET_NAMES
#: Every name under which a hub secret can sit in the hub's environment: the secrets, JupyterHub's own
#: name of the cookie secret, and the database URL (it may hold a password). None of them may reach a
#: user's pod, even when an operator lists it in BERDLSpawner.hub_env_to_forward.
HUB_ONLY_VARIABLES = frozenset({*ALL_SECRET_NAMES, "JPY_COOKIE_SECRET", "JUPYTERHUB_DB_URL"})


def read_secret_files(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The secrets found as files in the folder `environ` names (or the default one), and the problems
    met reading them. A missing folder or file is no problem: the environment then provides the value."""
    folder = Path(environ.get(SECRETS_DIR_VARIABLE, "").strip() or DEFAULT_SECRETS_DIR)
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in ALL_SECRET_NAMES:
        path = folder / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{name}: cannot read {path}: {getattr(error, 'strerror', None) or 'not UTF-8'}")
            continue
        # A file written by an editor or `echo` ends with a newline that is not part of the value.
        values[name] = text.removesuffix("\n").removesuffix("\r")
    return values, problems


def with_secret_files(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """`environ` with every secret found as a file put over its variable, and the problems met."""
    values, problems = read_secret_files(environ)
    return {**environ, **values}, problems
