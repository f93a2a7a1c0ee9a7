"""hub/README.md's command for the spawner's settings prints them (it once printed nothing)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

from localhub.tools import REPO


def test_the_documented_settings_command_prints_every_berdl_setting() -> None:
    from berdl_hub.spawner_traits import BERDLSpawnerSettings

    readme = (REPO / "hub" / "README.md").read_text()
    (command,) = re.findall(r"^python -c .*class_config_rst_doc.*$", readme, flags=re.MULTILINE)
    _python, *arguments = shlex.split(command)  # this test's interpreter runs it
    result = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, check=True)
    own = BERDLSpawnerSettings.class_own_traits(config=True)
    assert "init_image" in own
    assert "spark_cluster_manager_url" in own
    for name in own:
        assert f"BERDLSpawner.{name} : " in result.stdout
    assert "BERDLSpawner.start_timeout : " in result.stdout  # KubeSpawner's, under the tree's class name
