"""Running the project's podman (images/podman: private storage under .work/podman): building the images,
playing pods, reading their containers."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localhub.tools import REPO

IMAGES = REPO / "images"
#: Tags of the images the tests build, so that a developer's own `images/build` (tag dev) stays apart.
TAG = "test"
INIT_IMAGE = f"localhost/berdl-init:{TAG}"
NOTEBOOK_IMAGE = f"localhost/berdl-notebook:{TAG}"
HUB_IMAGE = f"localhost/berdl-hub:{TAG}"


class CommandFailed(AssertionError):
    """A command the test relied on failed; the message holds its output."""


def _describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )


def run(args: list[str], *, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise CommandFailed(_describe(result))
    return result


@dataclass
class Podman:
    """podman with the project's settings; `seconds` records how long the slow steps took."""

    wrapper: Path = IMAGES / "podman"
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([str(self.wrapper), *args], timeout=timeout, check=check)

    def build_images(self) -> None:
        """The init and notebook images on the local stand-in base (built first; cached in .work/)."""
        started = time.monotonic()
        run([str(IMAGES / "build"), "--tag", TAG, "init", "notebook"], timeout=1500)
        self.seconds["build"] = time.monotonic() - started

    def build_hub_image(self) -> None:
        """The hub image, on the local Debian base (no JupyterHub image can be pulled here)."""
        started = time.monotonic()
        run([str(IMAGES / "build"), "--tag", TAG, "hub"], timeout=1500)
        self.seconds["build hub"] = time.monotonic() - started

    def play(self, manifest: Path) -> subprocess.CompletedProcess[str]:
        """`kube play` a pod manifest; on failure the pod is removed and the output is in the error."""
        result = self("kube", "play", "--log-driver", "k8s-file", str(manifest), timeout=600, check=False)
        if result.returncode != 0:
            self.down(manifest)
            raise CommandFailed(_describe(result))
        return result

    def down(self, manifest: Path) -> None:
        self("kube", "down", str(manifest), timeout=120, check=False)

    def create_secret(self, name: str, values: dict[str, str], folder: Path) -> None:
        """A podman secret that `kube play` reads for a pod's `secretKeyRef`s to the Kubernetes Secret
        `name`: podman 4.3 cannot read a Secret given in the play's YAML, but takes one made beforehand
        whose content is a flat JSON object of base64 values (a Secret's `data`)."""
        data = {key: base64.b64encode(value.encode()).decode("ascii") for key, value in values.items()}
        path = folder / f"{name}.json"
        path.write_text(json.dumps(data))
        path.chmod(0o600)
        try:
            self.remove_secret(name)  # what a killed earlier run may have left
            self("secret", "create", name, str(path))
        finally:
            path.unlink()

    def remove_secret(self, name: str) -> None:
        """`kube down` leaves a podman secret behind."""
        self("secret", "rm", name, timeout=60, check=False)

    def remove_pod(self, name: str) -> None:
        self("pod", "rm", "--force", "--ignore", name, timeout=120, check=False)

    def logs(self, container: str) -> tuple[str, str]:
        result = self("logs", container)
        return result.stdout, result.stderr

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(self("container", "inspect", container).stdout)[0]

    def exec(self, container: str, *command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run a command in a container through the image's start.sh, as the server itself starts: its
        start-up hooks (the JUPYTER_*_DIR variables) apply, as the container's user (the pod's)."""
        return self("exec", container, "start.sh", *command, timeout=timeout)

    def copy_in(self, source: Path, container: str, dest: str) -> None:
        self("cp", str(source), f"{container}:{dest}")
