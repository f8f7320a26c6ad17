"""``use "path/other.synth" as alias``: checking imported recipes and resolving ``alias.name``.

An imported recipe is parsed and checked on its own, with its paths relative
to *its* folder and its params at their defaults. Its declarations are then
visible as ``alias.name``: sources and steps as step inputs and exports,
models as ``model=alias.m``, templates as ``prompt=alias.t``. Only what the
importing recipe uses is pulled in: a referenced step brings its ancestors
(qualified as ``alias.*``), and nothing of the import runs otherwise; its
exports are ignored. Imports nest (``a.b.step``). A cycle of imports is an
error naming the chain.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthlang import ast
from synthlang.errors import ConfigError, Diagnostics, SourceError
from synthlang.plan.program import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from synthlang.check.checker import _Checker


def qualified(e: ast.Expr) -> str | None:
    """``a`` for a Name, ``a.b.c`` for nested attributes of a Name; ``None`` otherwise."""
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Attr):
        inner = qualified(e.obj)
        return f"{inner}.{e.name}" if inner is not None else None
    return None


def load_imports(ck: _Checker, decls: tuple[ast.Decl, ...]) -> None:
    """Check every ``use`` of a recipe; fill ``ck.imports`` (alias → checker of the imported recipe)."""
    from synthlang.check.checker import _Checker
    from synthlang.syntax import parse_file

    for d in decls:
        if not isinstance(d, ast.Use):
            continue
        target = resolve(ck.base_dir, d.path)
        if not d.path.endswith(".synth"):
            ck.err(f"an import must name a .synth file, not '{d.path}'", d.span, code="bad-import", path=d.path)
            ck.bad_imports.add(d.alias)
            continue
        confined = getattr(ck, "_confined", None)  # path confinement, where the checker has it
        if target is not None and confined is not None and not confined(target, d.path, d.span, "import"):
            ck.bad_imports.add(d.alias)
            continue
        if target is None or not target.is_file():
            ck.err(f"imported recipe not found: {d.path}", d.span,
                   hint=f"paths are relative to the importing recipe's folder ({shown(ck.base_dir) or '.'})", code="missing-file", path=d.path)
            ck.bad_imports.add(d.alias)
            continue
        if target in ck.stack:
            chain = [shown(p) for p in ck.stack[ck.stack.index(target):]] + [shown(target)]
            ck.err(f"import cycle: {' -> '.join(chain)}", d.span, hint="recipes cannot import each other; move the shared part "
                   "into a third recipe that both import", code="import-cycle", chain=chain)
            ck.bad_imports.add(d.alias)
            continue
        sub: _Checker | None = None
        try:
            recipe = parse_file(shown(target))
            sub = _Checker(recipe, {}, target.parent)
            sub.stack = ck.stack + (target,)
            for attr in ("root", "allow_outside"):  # path confinement, where the checker has it: an import
                if hasattr(ck, attr):                 # belongs to its importer's project
                    setattr(sub, attr, getattr(ck, attr))
            sub.run()
        except Diagnostics as exc:
            ck.errors.extend(exc.errors)
        except SourceError as exc:
            ck.errors.append(exc)
        except ConfigError as exc:
            ck.err(f"cannot import {d.path}: {exc}", d.span, code="bad-import", path=d.path)
        if sub is None or sub.errors:
            ck.bad_imports.add(d.alias)
            continue
        ck.imports[d.alias] = sub


def resolve(base: Path, rel: str) -> Path | None:
    """``base / rel`` made absolute, or ``None`` when it cannot name a file (a NUL byte, a name too long)."""
    try:
        p = (base / rel).resolve()
        p.exists()
        return p
    except (OSError, ValueError):
        return None


def shown(p: Path) -> str:
    """``p`` relative to the working directory when it is below it (diagnostics stay short and stable)."""
    try:
        rel = str(p.resolve().relative_to(Path.cwd().resolve()))
        return "" if rel == "." else rel
    except ValueError:
        return str(p)


def _names(sub: _Checker, kind: str) -> list[str]:
    if kind == "model":
        return list(sub.models)
    if kind == "template":
        return list(sub.templates)
    return list(sub.sources) + list(sub.steps) + list(sub.imported_steps)


def _report(ck: _Checker, kind: str, qname: str, span: Any) -> None:
    from synthlang.check.checker import did_you_mean

    alias, _, member = qname.partition(".")
    if alias in ck.bad_imports:
        return  # the import itself is already reported
    sub = ck.imports.get(alias)
    if sub is None:
        ck.err(f"unknown import '{alias}' in '{qname}'", span,
               hint=did_you_mean(alias, list(ck.imports)) or "import it first: use \"path/other.synth\" as " + alias,
               code="unknown-name", name=qname, kind="import")
        return
    what = {"model": "model", "template": "template"}.get(kind, "source or step")
    ck.err(f"imported recipe '{alias}' has no {what} '{member}'", span,
           hint=did_you_mean(member, _names(sub, kind)) or f"its {what}s: {', '.join(_names(sub, kind)) or '(none)'}",
           code="unknown-name", name=qname, kind=kind)


def _loop_dependency(sub: _Checker, member: str) -> str | None:
    """The loop of ``sub`` that node ``member`` is or belongs to, or whose grown pool it reads (a step
    declared after the loop reading a pool the loop feeds); ``None`` when none."""
    decls = sub.recipe.decls
    loops = [(i, d) for i, d in enumerate(decls) if isinstance(d, ast.Loop)]
    if not loops:
        return None
    owner = {loop.name: loop.name for _, loop in loops}
    fed: dict[str, tuple[int, str]] = {}
    for i, loop in loops:
        for d in loop.body:
            if isinstance(d, ast.Step):
                owner[d.name] = loop.name
            elif isinstance(d, ast.Feed):
                fed.setdefault(d.pool, (i, loop.name))
    where = {d.name: i for i, d in enumerate(decls) if isinstance(d, ast.Step)}
    name: str | None = member
    reader: str | None = None
    seen: set[str] = set()
    while name is not None and name not in seen:
        seen.add(name)
        if name in owner:
            return owner[name]
        if name in fed and reader is not None and where.get(reader, -1) > fed[name][0]:
            return fed[name][1]
        spec = sub.steps.get(name)
        reader, name = name, (spec.input if spec is not None else None)
    return None


def find(ck: _Checker, kind: str, qname: str, span: Any = None) -> Any:
    """An imported model spec or template text by qualified name; reports and returns ``None`` when missing."""
    alias, _, member = qname.partition(".")
    sub = ck.imports.get(alias)
    found = None
    if sub is not None:
        table = sub.models if kind == "model" else sub.templates
        found = table.get(member)
        if found is None and "." in member:
            found = find(sub, kind, member, None)
    if found is None and span is not None:
        _report(ck, kind, qname, span)
    if isinstance(found, ModelSpec):
        found = dataclasses.replace(found, name=qname)
        ck.models.setdefault(qname, found)
    return found


def pull(ck: _Checker, qname: str, span: Any = None) -> bool:
    """Make the imported source or step ``qname`` (and its ancestors) part of this program."""
    if qname in ck.sources or qname in ck.imported_steps:
        return True
    alias, _, member = qname.partition(".")
    sub = ck.imports.get(alias)
    looped = _loop_dependency(sub, member) if sub is not None and member else None
    if looped is not None:   # issue 11 item 16: an imported loop would silently run its chain once
        if span is not None:
            ck.err(f"'{qname}' depends on loop '{looped}' of the imported recipe; imported loops do not run, so its "
                   "rows would come from one pass without the loop", span, code="imported-loop", name=qname, loop=looped,
                   hint="copy the loop into this recipe, or import only sources and steps that no loop feeds")
        return False
    if sub is None or not member or not (member in sub.sources or member in sub.steps or member in sub.imported_steps
                                         or ("." in member and pull(sub, member))):
        if span is not None:
            _report(ck, "node", qname, span)
        return False
    if member in sub.sources:
        ck.sources[qname] = dataclasses.replace(sub.sources[member], name=qname)
    else:
        spec = sub.steps.get(member) or sub.imported_steps[member]
        pull(ck, f"{alias}.{spec.input}")
        model = dataclasses.replace(spec.model, name=f"{alias}.{spec.model.name}") if spec.model is not None else None
        if model is not None:
            ck.models.setdefault(model.name, model)
        opts = dict(spec.opts)
        if isinstance(opts.get("model"), str):
            opts["model"] = f"{alias}.{opts['model']}"
        ck.imported_steps[qname] = dataclasses.replace(spec, name=qname, input=f"{alias}.{spec.input}", opts=opts, model=model)
        ck.steps[qname] = ck.imported_steps[qname]  # so exports and lookups see it like a local step
    ck.fields[qname] = dict(sub.fields[member])
    ck.fps[qname] = sub.fps[member]
    return True
