"""Which of an old venv's distributions can come back from an index, read from the files pip leaves.

The dist-info folders are written here as pip writes them (METADATA; direct_url.json as PEP 610 says for
an install from a URL, a VCS or a local folder), so each origin is covered without a network.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from berdl_init.restore import Distribution, Outcome, old_distributions


def installed(venv: Path, name: str, version: str, direct_url: dict | None = None) -> None:
    info = venv / "lib/python3.11/site-packages" / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


def test_each_origin_is_told_apart(tmp_path: Path) -> None:
    venv = tmp_path / "old"
    installed(venv, "From-Index", "1.2")
    installed(venv, "wheel-file", "1.0", {"url": "file:///home/alice/w.whl", "archive_info": {}})
    installed(venv, "remote", "2.0", {"url": "https://example.org/r.tar.gz", "archive_info": {}})
    vcs = {"vcs": "git", "commit_id": "abc123", "requested_revision": "main"}
    installed(venv, "from-git", "0.1", {"url": "https://example.org/g.git", "vcs_info": vcs})
    installed(venv, "mine", "0.0.1", {"url": "file:///home/alice/src", "dir_info": {"editable": True}})
    installed(venv, "folder", "3.0", {"url": "file:///home/alice/f", "dir_info": {}})

    found = {dist.name: dist for dist in old_distributions(venv)}

    assert found["from-index"] == Distribution("from-index", "1.2")
    assert found["wheel-file"].source == ("/home/alice/w.whl",)
    assert found["remote"].source == ("https://example.org/r.tar.gz",)
    assert found["from-git"].source == ("git+https://example.org/g.git@abc123",)
    assert found["mine"].source == ("-e", "/home/alice/src")
    assert found["folder"].source == ("/home/alice/f",)
    assert all(dist.origin for name, dist in found.items() if name != "from-index")


def test_a_folder_without_usable_metadata_is_left_out(tmp_path: Path) -> None:
    venv = tmp_path / "old"
    broken = venv / "lib/python3.11/site-packages/broken-1.0.dist-info"
    broken.mkdir(parents=True)
    (broken / "METADATA").write_text("Metadata-Version: 2.1\n")
    installed(venv, "fine", "1.0")

    assert [dist.name for dist in old_distributions(venv)] == ["fine"]


def test_the_command_installs_exactly_what_is_missing(tmp_path: Path) -> None:
    outcome = Outcome(
        missing=[
            (Distribution("a", "1.0"), "ERROR: no matching distribution"),
            (Distribution("mine", "0.1", ("-e", "/home/alice/my src"), "editable"), "editable"),
        ]
    )
    python = Path("/home/alice/venv/bin/python")

    command = outcome.command(python)

    assert command is not None
    assert shlex.split(command) == [str(python), "-m", "pip", "install", "a", "-e", "/home/alice/my src"]
    assert Outcome().command(python) is None
