"""The idle culler's two settings, BERDL_IDLE_TIMEOUT and BERDL_CULL_EVERY, as the hub reads them and
the command line of the jupyterhub-idle-culler service it configures. tests/e2e/test_failures.py runs
the culler they configure."""

from __future__ import annotations

import pytest
from berdl_hub import hub_config
from traitlets.config import Config

from tests.hub.test_hub import GOOD


def culler_command(env: dict[str, str]) -> list[str] | None:
    """The culler service's command for these settings, None when there is no culler."""
    c = Config()
    hub_config.apply(c, hub_config.load({**GOOD, **env}), {})
    culler = [s for s in c.JupyterHub.services if s["name"] == hub_config.IDLE_CULLER]
    return culler[0]["command"] if culler else None


@pytest.mark.parametrize(
    ("idle_timeout", "cull_every"),
    # Unset: a quarter of the timeout, within 60 to 600 s.
    [("", 600), ("3600", 600), ("1000", 250), ("120", 60), ("20", 60), ("86400", 600)],
)
def test_the_interval_defaults_to_a_quarter_of_the_timeout(idle_timeout: str, cull_every: int) -> None:
    command = culler_command({"BERDL_IDLE_TIMEOUT": idle_timeout})
    assert command is not None
    assert command[-2:] == [f"--timeout={idle_timeout or 3600}", f"--cull-every={cull_every}"]


def test_the_interval_is_a_setting_of_its_own() -> None:
    command = culler_command({"BERDL_IDLE_TIMEOUT": "20", "BERDL_CULL_EVERY": " 5 "})
    assert command is not None
    assert command[-2:] == ["--timeout=20", "--cull-every=5"]


@pytest.mark.parametrize("value", ["0", "5s", "-1", "1.5", "every minute"])
def test_a_bad_interval_is_one_problem_naming_it(value: str) -> None:
    with pytest.raises(hub_config.HubConfigError) as raised:
        hub_config.load({**GOOD, "BERDL_CULL_EVERY": value})
    assert raised.value.problems == [f"BERDL_CULL_EVERY must be whole seconds, 1 or more, got {value!r}"]


def test_no_culler_when_culling_is_off_whatever_the_interval() -> None:
    assert culler_command({"BERDL_IDLE_TIMEOUT": "0", "BERDL_CULL_EVERY": "5"}) is None
