"""The few non-public parts of KubeSpawner and JupyterHub that BERDLSpawner still uses, and the versions
they are pinned to in constraints.txt. A change of signature or behaviour here fails this test before
it breaks a spawn; update the spawner and the pin together."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

from jupyterhub.spawner import Spawner
from kubespawner import KubeSpawner

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"


def pinned() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_kubespawner_and_its_client_run_at_the_pinned_versions() -> None:
    pins = pinned()
    for distribution in ("jupyterhub-kubespawner", "kubernetes-asyncio", "jupyterhub"):
        assert version(distribution) == pins[distribution], distribution


def test_the_private_parts_the_spawner_uses_keep_their_signatures() -> None:
    # Template expansion with KubeSpawner's own slugs (home paths, favorites, notebook_dir).
    assert str(inspect.signature(KubeSpawner._expand_user_properties)) == "(self, template, slug_scheme=None)"
    # A pod's server URL by KubeSpawner's own rule (pod_connect_ip, SSL, services), for get_url().
    assert str(inspect.signature(KubeSpawner._get_pod_url)) == "(self, pod)"
    # JupyterHub's "user" or "user:server" for log lines.
    assert isinstance(inspect.getattr_static(Spawner, "_log_name"), property)


def test_kubespawner_calls_the_after_pod_created_hook_with_the_created_pod() -> None:
    """The credentials Secret is created by this (public) hook; what the spawner relies on is how
    KubeSpawner's (private) start calls it: once the pod has a uid, with the reflector's pod dict, and
    stopping the pod when the hook fails."""
    source = inspect.getsource(KubeSpawner._start)
    assert "if self.internal_ssl or self.services_enabled or self.after_pod_created_hook:" in source
    assert "self.pod_has_uid(" in source
    assert "await maybe_future(self.after_pod_created_hook(self, pod))" in source
    assert "await self.stop(True)" in source
    # A pod of the same name still there: KubeSpawner stops it (BERDLSpawner.stop then deletes only the pod).
    assert "await self.stop(True)" in inspect.getsource(KubeSpawner._make_create_pod_request)
