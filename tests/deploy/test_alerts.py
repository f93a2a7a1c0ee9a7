"""deploy/monitoring's alerting rules: `promtool test rules` (Debian's prometheus) passes on the synthetic
series of berdl-alerts-test.yaml, and fails once any rule's threshold is broken on purpose, one way (the
alert no longer fires when it should) and the other (it fires when it should stay quiet), and once its
`for:` or any of its windows is made shorter or longer. Each rule names series the hub serves, and each
has its entry in deploy/README.md's "Operating it"."""

from __future__ import annotations

import re
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

#: For each alert: its `for:` (written `for: 5m`) and each range window in its expression (its whitespace
#: collapsed), the same made shorter and longer; the test's cases are evaluated at the minutes where
#: either change moves the alert's start or end.
TIMES: dict[str, list[tuple[str, str, str]]] = {
    "BERDLHubDown": [("for: 5m", "for: 4m", "for: 6m")],
    "BERDLSpawnFailures": [
        ("for: 5m", "for: 4m", "for: 6m"),
        # The count of failures, the failures over all spawns, and all spawns.
        ('failure"}[15m])) > 2.5', 'failure"}[10m])) > 2.5', 'failure"}[30m])) > 2.5'),
        ('failure"}[15m])) /', 'failure"}[10m])) /', 'failure"}[30m])) /'),
        ('success|failure"}[15m]))', 'success|failure"}[10m]))', 'success|failure"}[30m]))'),
    ],
    "BERDLSparkClusterFailures": [("[15m]", "[10m]", "[30m]")],
    "BERDLInitFailing": [("[30m]", "[20m]", "[45m]")],
    "BERDLProxyRestartedOften": [("[1h]", "[45m]", "[2h]")],
}

WINDOW = re.compile(r"\[\d+[smhdwy]\]")


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


def expression(rule: dict[str, Any]) -> str:
    """The rule's expression with its whitespace collapsed to single spaces (it is written over lines)."""
    return " ".join(rule["expr"].split())


def for_line(rule: dict[str, Any]) -> str:
    """The rule's `for:` as written, `for: 5m`; "" for a rule without one."""
    return f"for: {rule['for']}" if "for" in rule else ""


def with_expression(alert: str, old: str, new: str, folder: Path) -> Path:
    """The rule file with `old` replaced by `new` in `alert`'s expression (see expression()) or in its
    `for:` (see for_line()): it must be there once, in one or the other."""
    document = yaml.safe_load(ALERT_RULES.read_text())
    (rule,) = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == alert]
    expr, for_ = expression(rule), for_line(rule)
    assert expr.count(old) + for_.count(old) == 1, f"{alert}: {old!r} in {for_!r} and {expr!r}"
    if old in for_:
        rule["for"] = for_.replace(old, new).removeprefix("for: ")
    else:
        rule["expr"] = expr.replace(old, new)
    path = folder / "broken-rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_rules_pass_their_tests(tmp_path: Path) -> None:
    result = subprocess.run(
        [require_tool("promtool"), "test", "rules", str(TESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_tests_and_a_broken_threshold_for_and_window_to_try() -> None:
    alerts = {rule["alert"] for rule in rules()}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert alerts == tested == set(BROKEN) == set(TIMES)
    for rule in rules():
        alert, expr = rule["alert"], expression(rule)
        olds = [old for old, _, _ in TIMES[alert]]
        # An entry for its `for:` if it has one, and for each window of its expression, by where it stands.
        assert [old for old in olds if old.startswith("for: ")] == ([for_line(rule)] if "for" in rule else [])
        in_expr = [old for old in olds if not old.startswith("for: ")]
        assert all(expr.count(old) == 1 for old in in_expr), f"{alert}: {in_expr} in {expr!r}"
        tried = sorted(expr.index(old) + window.start() for old in in_expr for window in WINDOW.finditer(old))
        assert tried == [window.start() for window in WINDOW.finditer(expr)], alert
        for old, shorter, longer in TIMES[alert]:
            assert len({old, shorter, longer}) == 3, (alert, old)


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


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        pytest.param(alert, old, new, id=f"{alert}-{old}-{way}")
        for alert, times in TIMES.items()
        for old, shorter, longer in times
        for new, way in ((shorter, "shorter"), (longer, "longer"))
    ],
)
def test_each_rule_fails_its_tests_with_its_for_or_window_changed(
    tmp_path: Path, alert: str, old: str, new: str
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
