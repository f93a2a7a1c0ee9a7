"""Dotfiles: every NAME.j2 in the templates folder renders to ~/.NAME, never over a user's edit
(the policy is in berdl_init/managed.py)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berdl_init.errors import SettingsError
from berdl_init.managed import plan_managed_file
from berdl_init.plan import PlanContext, StepPlan
from berdl_init.settings import Settings
from berdl_init.state import sha256

TEMPLATE_SUFFIX = ".j2"


@dataclass(frozen=True)
class Template:
    name: str
    source: bytes

    @property
    def target(self) -> str:
        """The home-relative file it renders to: bashrc.j2 -> .bashrc"""
        return "." + self.name.removesuffix(TEMPLATE_SUFFIX)


def discover(templates_dir: Path) -> list[Template]:
    """The templates in `templates_dir`, by name (sub-folders and other files are ignored)."""
    try:
        paths = sorted(p for p in templates_dir.iterdir() if p.name.endswith(TEMPLATE_SUFFIX) and p.is_file())
        return [Template(path.name, path.read_bytes()) for path in paths]
    except OSError as error:
        raise SettingsError(
            f"BERDL_TEMPLATES_DIR={str(templates_dir)!r}: cannot be read ({error.strerror})"
        ) from None


def template_context(settings: Settings) -> dict[str, Any]:
    return {
        **settings.template_vars,
        "user": settings.user,
        "home": str(settings.home),
        "venv_dir": str(settings.venv_dir),
        "venv_python": str(settings.venv_python),
    }


def canonical(context: dict[str, Any]) -> str:
    """The template variables as one string: what a render depends on besides the template."""
    return json.dumps(context, sort_keys=True, default=str)


def render(template: Template, context: dict[str, Any]) -> bytes:
    """Render with StrictUndefined: an undefined variable is a settings error, not an empty string.

    A template renders once per run with the same variables: the check made before a home's first
    change and the dotfiles step share the result.
    """
    return _render(template, canonical(context))


@functools.lru_cache(maxsize=32)
def _render(template: Template, context_json: str) -> bytes:
    import shlex

    import jinja2

    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    environment.filters["shquote"] = shlex.quote
    try:
        text = template.source.decode()
        return environment.from_string(text).render(json.loads(context_json)).encode()
    except UnicodeDecodeError:
        raise SettingsError(f"template {template.name}: not UTF-8 text") from None
    except jinja2.TemplateSyntaxError as error:
        raise SettingsError(f"template {template.name}, line {error.lineno}: {error.message}") from None
    except jinja2.TemplateError as error:
        raise SettingsError(f"template {template.name}: {error.message}") from None
    except Exception as error:  # what the template's own expressions raise: {{ 1 // 0 }}, {{ "%d" % "x" }}
        raise SettingsError(f"template {template.name}: {type(error).__name__}: {error}") from None


def render_all(settings: Settings) -> None:
    """Render every template, to find template errors before the home is touched at all."""
    context = template_context(settings)
    for template in discover(settings.templates_dir):
        render(template, context)


def plan(ctx: PlanContext) -> StepPlan:
    step = StepPlan("dotfiles")
    context = template_context(ctx.settings)
    renderer = _CachedRenderer(ctx, context)

    # Every template's output is known before any decision, so a bad template stops the run here.
    templates = discover(ctx.settings.templates_dir)
    expected = {template.name: renderer.output_hash(template) for template in templates}

    for template in templates:
        changes, warnings = plan_managed_file(
            ctx, template.target, expected[template.name], functools.partial(renderer.output, template)
        )
        step.changes.extend(changes)
        step.warnings.extend(warnings)
    return step


class _CachedRenderer:
    """Renders lazily, remembering in the ledger which inputs gave which output hash.

    When a template's bytes and the variables are what they were last time, the output hash comes from
    the ledger and Jinja2 is never imported: that keeps a run with nothing to do fast.
    """

    def __init__(self, ctx: PlanContext, context: dict[str, Any]) -> None:
        self._ledger = ctx.ledger
        self._context = context
        self._context_hash = sha256(canonical(context).encode())
        self._outputs: dict[str, bytes] = {}

    def _inputs_hash(self, template: Template) -> str:
        return sha256(template.source + b"\0" + self._context_hash.encode())

    def output_hash(self, template: Template) -> str:
        cached = self._ledger.renders.get(template.name)
        if cached and cached.get("inputs") == self._inputs_hash(template) and "output" in cached:
            return cached["output"]
        return sha256(self.output(template))

    def output(self, template: Template) -> bytes:
        if template.name not in self._outputs:
            data = render(template, self._context)
            self._outputs[template.name] = data
            self._ledger.renders[template.name] = {
                "inputs": self._inputs_hash(template),
                "output": sha256(data),
            }
        return self._outputs[template.name]
