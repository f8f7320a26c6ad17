"""Jinja2 prompt templates, rendered in a sandbox with strict undefined.

This is the only module that imports jinja2. Values from data are passed as
template *variables*, so a seed whose text is ``{{ 7*7 }}`` is inserted
literally and never rendered again.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from synthlang.errors import SynthError


class TemplateError(SynthError):
    """A template failed to compile or to render.

    Attributes:
        name: the template's name.
        line: 1-based line inside the template, when known.
    """

    def __init__(self, message: str, name: str, line: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.line = line


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=512)
def compile_template(text: str, name: str = "<template>") -> jinja2.Template:
    """Compile template text once (cached by text).

    Raises:
        TemplateError: on a Jinja2 syntax error, with the template line.
    """
    try:
        return _env().from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template '{name}' line {exc.lineno}: {exc.message}", name, exc.lineno) from None


def variables(text: str, name: str = "<template>") -> set[str]:
    """The variables a template reads (``jinja2.meta.find_undeclared_variables``).

    Raises:
        TemplateError: on a syntax error.
    """
    return set(_variables(text, name))


@lru_cache(maxsize=1024)
def _variables(text: str, name: str) -> frozenset[str]:
    try:
        return frozenset(meta.find_undeclared_variables(_env().parse(text)))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template '{name}' line {exc.lineno}: {exc.message}", name, exc.lineno) from None


def render(text: str, values: dict[str, Any], name: str = "<template>") -> str:
    """Render a template with row values.

    Raises:
        TemplateError: when a variable is missing, the sandbox refuses an
            attribute (``__class__``, ``__globals__``, ...) or rendering fails.
    """
    tpl = compile_template(text, name)
    try:
        return tpl.render(**values).strip()
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template '{name}': {exc.message}", name) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template '{name}': unsafe operation refused by the sandbox: {exc}", name) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template '{name}': {exc}", name) from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise TemplateError(f"template '{name}': {type(exc).__name__}: {exc}", name) from None


def template_hash(text: str) -> str:
    """sha256 of a template's text, first 16 hex digits (recorded in lineage)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
