"""The init image alone: berdl-init builds the user's venv of either kind with no network, as the user,
on a read-only root filesystem, from what the image prepared when it was built (virtualenv's app data)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from localhub.podman import INIT_IMAGE, Podman

pytestmark = pytest.mark.slow

UID, GID = 1000, 100


@pytest.mark.parametrize("system_site_packages", [True, False], ids=["sees-the-image", "isolated"])
def test_the_venv_is_built_offline_on_a_read_only_root(
    podman: Podman, tmp_path: Path, system_site_packages: bool
) -> None:
    home = tmp_path / "dana"
    home.mkdir()
    os.chown(home, UID, GID)
    result = podman(
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
        "--user", f"{UID}:{GID}", "--cap-drop", "all", "--security-opt", "no-new-privileges",
        "--env", "BERDL_HOME=/home/dana", "--env", "BERDL_USER=dana",
        "--env", f"BERDL_VENV_SYSTEM_SITE_PACKAGES={str(system_site_packages).lower()}",
        "--volume", f"{home}:/home/dana",
        INIT_IMAGE, "--json", "--only", "venv",
        timeout=300,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["ok"] is True, report
    assert [c["action"] for c in report["changes"]][:1] == ["build-venv"]

    venv = home / ".virtualenvs/envs/dana_default_env"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert f"include-system-site-packages = {str(system_site_packages).lower()}" in cfg
    seeded_pip = list(venv.glob("lib/python3*/site-packages/pip/__init__.py"))
    if system_site_packages:
        assert seeded_pip == []  # the image's pip serves, through a launcher
        assert "Written by berdl-init" in (venv / "bin/pip").read_text()
    else:
        assert len(seeded_pip) == 1  # seeded from the wheels virtualenv ships, no download
