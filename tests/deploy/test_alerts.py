"""deploy/monitoring's alerting rules: `promtool test rules` (Debian's prometheus) passes on the synthetic
series of berdl-alerts-test.yaml, and fails once any rule's threshold is broken on purpose, one way (the
alert no longer fires when it should) and the other (it fires when it should stay quiet). Each rule
names series the hub serves, and each has its entry in deploy/README.md's "Operating it"."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from localhub.prometheus import ALERT_RULES
from tests.conftest import require_tool
from tests.deploy.monitoring import hub_series, series_named
from tests.deploy.rendered import REPO

TESTS = Path(__file__).with_name("berdl-alerts-test.yaml")

#: For each alert: a threshold in its expression, the same made so high that the alert never fires on
#: the test's series, and so low that it fires where the test expects quiet.
BROKEN: dict[str, list[tuple[str, str, str]]] = {
    "BERDLHubDown": [("== 0", "== 7", ">= 0")],
    "BERDLSpawnFailures": [("> 2.5 and", "> 50 and", "> 1.5 and"), ("> 0.2", "> 0.9", ">= 0")],
    "BERDLSparkClusterFailures": [("> 2.5", "> 50", "> 1.5")],
    "BERDLInitFailing": [("> 2.5", "> 50", "> 1.5")],
    "BERDLProxyRestartedOften": [("> 2.5", "> 50", "> 1.5")],
}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(rule_file: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of berdl-alerts-test.yaml against `rule_file`."""
    tests = yaml.safe_load(TESTS.read_text())
    tests["rule_files"] = [str(rule_file)]
    test_file = folder / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    return subprocess.run(
        [require_tool("promtool"), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def with_expression(alert: str, old: str, new: str, folder: Path) -> Path:
    """The rule file with `old` replaced by `new` in `alert`'s expression (it must be there once)."""
    document = yaml.safe_load(ALERT_RULES.read_text())
    (rule,) = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == alert]
    assert rule["expr"].count(old) == 1, f"{alert}: {old!r} in {rule['expr']!r}"
    rule["expr"] = rule["expr"].replace(old, new)
    path = folder / "broken-rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_rules_pass_their_tests(tmp_path: Path) -> None:
    result = subprocess.run(
        [require_tool("promtool"), "test", "rules", str(TESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_tests_and_a_broken_threshold_to_try() -> None:
    alerts = {rule["alert"] for rule in rules()}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert alerts == tested == set(BROKEN)


@pytest.mark.parametrize(
    ("alert", "old", "new", "broken"),
    [
        pytest.param(alert, old, new, way, id=f"{alert}-{old.strip()}-{way}")
        for alert, thresholds in BROKEN.items()
        for old, never, always in thresholds
        for new, way in ((never, "never-fires"), (always, "fires-when-quiet"))
    ],
)
def test_each_rule_fails_its_tests_with_its_threshold_broken(
    tmp_path: Path, alert: str, old: str, new: str, broken: str
) -> None:
    result = promtool(with_expression(alert, old, new, tmp_path), tmp_path)
    assert result.returncode != 0, f"{alert} with {new!r}: promtool still passes"
    assert f"alertname: {alert}" in result.stdout + result.stderr


def test_the_rules_name_only_series_the_hub_serves() -> None:
    served = hub_series()
    served.add("up")  # Prometheus's own, for every target
    for rule in rules():
        named = series_named(rule["expr"])
        assert named, rule["alert"]
        assert named <= served, f"{rule['alert']}: {sorted(named - served)}"


def test_each_alert_is_explained_in_the_operators_guide() -> None:
    readme = (REPO / "deploy" / "README.md").read_text()
    guide = readme[readme.index("## Operating it") :]
    for rule in rules():
        assert rule["annotations"]["runbook"] == f"deploy/README.md, Operating it, {rule['alert']}"
        assert f"`{rule['alert']}`" in guide, rule["alert"]
