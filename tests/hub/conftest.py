"""Fixtures of the hub tests: a throwaway kube config, spawners, fake services, log capture."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from berdl_hub.spawner import BERDLSpawner

from localhub.standins import hub as hub_standins
from localhub.standins.hub import reset_kubespawner
from localhub.standins.kube import throwaway_kube_config
from tests.hub.hubtest_stack import Stack, running_stack


@pytest.fixture(scope="session", autouse=True)
def throwaway_kubeconfig() -> Iterator[Path]:
    """KubeSpawner loads a kube config in __init__; give it one that points nowhere."""
    with throwaway_kube_config() as path:
        yield path


@pytest.fixture(scope="session")
def auth2_url() -> Iterator[str]:
    """The KBase Auth2 stand-in of the real-hub tests (hubtest_kbase.AUTH2), served for the session."""
    # Imported on first use: only the real-hub tests need the stand-in.
    from localhub.standins.kbase_auth2 import serve_in_thread
    from tests.hub.hubtest_kbase import AUTH2

    with serve_in_thread(AUTH2.app()) as url:
        yield url


@pytest_asyncio.fixture
async def kube_reset() -> AsyncIterator[None]:
    """KubeSpawner shares reflectors and API clients per process: end each test clean."""
    yield
    await reset_kubespawner()


@pytest.fixture
def make_spawner() -> Callable[..., BERDLSpawner]:
    """Build an offline-capable spawner for a user (localhub.standins.hub.make_spawner: keyword
    arguments set traits; `user` and `server` make named servers of one user)."""
    return hub_standins.make_spawner


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every log record, at every level, of every logger."""
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest_asyncio.fixture
async def stack(make_spawner: Callable[..., BERDLSpawner]) -> AsyncIterator[Stack]:
    """The Kubernetes emulator, a kubelet stand-in and the fake services, for one test."""
    async with running_stack(make_spawner) as running:
        yield running
