"""The project's podman (images/podman: private storage under .work/podman), called without blocking an
event loop: the node stand-in plays pods while it keeps answering for the others."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localhub.podman import IMAGES


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"podman {' '.join(self.args)} exited {self.returncode}: {self.stderr.strip()[-2000:]}"


@dataclass(frozen=True)
class AsyncPodman:
    wrapper: Path = IMAGES / "podman"

    async def __call__(self, *args: str, timeout: float = 120) -> Result:
        process = await asyncio.create_subprocess_exec(
            str(self.wrapper),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            process.kill()
            await process.wait()
            raise
        return Result(args, process.returncode or 0, stdout.decode(errors="replace"), stderr.decode())

    async def inspect(self, container: str) -> dict[str, Any] | None:
        """`podman container inspect`, or None when there is no such container."""
        result = await self("container", "inspect", container)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)[0]
