"""A ValidatingAdmissionPolicy decided as the API server decides it, on one request, with a CEL library.

Follows Kubernetes' description of the v1 kind: the request must match one of `matchConstraints`'
resource rules and every `matchConditions` expression; the `variables` are computed in order (each can
read the ones before it as `variables.NAME`); every `validations` expression must be true. With
`failurePolicy: Fail`, an expression that cannot be evaluated (a field read that is absent, a wrong type)
refuses the request, as the API server does. The CEL is cel-python's: the policy is written in the
subset both evaluate (no optional fields `?.`, no Kubernetes-only library functions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy import celtypes

_ENVIRONMENT = celpy.Environment()


@dataclass(frozen=True)
class Request:
    """An admission request: who, what, on which object."""

    operation: str  # CREATE, UPDATE, DELETE
    resource: str  # the plural: pods, secrets, ...
    namespace: str
    username: str
    object: Mapping[str, Any] | None = None
    old_object: Mapping[str, Any] | None = None
    group: str = ""
    version: str = "v1"

    def cel(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "namespace": self.namespace,
            "resource": {"group": self.group, "version": self.version, "resource": self.resource},
            "userInfo": {"username": self.username},
        }


@dataclass
class Decision:
    matched: bool
    refusals: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.refusals


def evaluate(expression: str, activation: Mapping[str, Any]) -> Any:
    """The value of a CEL expression; `activation` holds CEL values (celpy.json_to_cel makes them)."""
    program = _ENVIRONMENT.program(_ENVIRONMENT.compile(expression))
    result = program.evaluate(dict(activation))
    if isinstance(result, celpy.CELEvalError):
        raise result
    return result


def _rule_matches(rule: Mapping[str, Any], request: Request) -> bool:
    def covers(values: list[str], value: str) -> bool:
        return "*" in values or value in values

    return (
        covers(rule.get("apiGroups", []), request.group)
        and covers(rule.get("apiVersions", []), request.version)
        and covers(rule.get("operations", []), request.operation)
        and covers(rule.get("resources", []), request.resource)
    )


def decide(policy: Mapping[str, Any], request: Request) -> Decision:
    """The policy's decision on `request`: not matched (the policy says nothing), allowed, or refused
    with the messages of the validations that failed (or the error of one that could not be evaluated)."""
    spec = policy["spec"]
    rules = spec["matchConstraints"]["resourceRules"]
    if not any(_rule_matches(rule, request) for rule in rules):
        return Decision(matched=False)
    activation: dict[str, Any] = {
        "request": celpy.json_to_cel(request.cel()),
        "object": celpy.json_to_cel(request.object),
        "oldObject": celpy.json_to_cel(request.old_object),
    }
    for condition in spec.get("matchConditions", []):
        if not evaluate(condition["expression"], activation):
            return Decision(matched=False)
    decision = Decision(matched=True)
    try:
        variables = celtypes.MapType({})
        for variable in spec.get("variables", []):
            value = evaluate(variable["expression"], {**activation, "variables": variables})
            variables[celtypes.StringType(variable["name"])] = value
        for validation in spec["validations"]:
            if not evaluate(validation["expression"], {**activation, "variables": variables}):
                decision.refusals.append(validation.get("message", validation["expression"]))
    except celpy.CELEvalError as error:
        if spec.get("failurePolicy", "Fail") == "Fail":
            decision.refusals.append(f"the policy could not be evaluated: {error}")
    return decision
