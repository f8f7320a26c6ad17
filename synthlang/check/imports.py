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
        except SourceError as exc:
            ck.errors.append(exc)
            ck.bad_imports.add(d.alias)
            continue
        except ConfigError as exc:
            ck.err(f"cannot import {d.path}: {exc}", d.span, code="bad-import", path=d.path)
            ck.bad_imports.add(d.alias)
            continue
        overrides = cli_overrides(ck, d.alias, recipe)  # a bad --param alias.x is the user's flag: ConfigError
        try:
            recipe, presets, specs = use_site(ck, d, recipe)
            sub = _Checker(recipe, overrides, target.parent)
            sub.preset_params, sub.preset_models = presets, specs
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


def cli_overrides(ck: _Checker, alias: str, recipe: ast.Recipe) -> dict[str, str]:
    """The ``--param alias.name=value`` overrides meant for one import, without the alias.

    Raises:
        ConfigError: an override naming no param of the imported recipe (nested ``alias.b.x`` pass on).
    """
    from synthlang.check.checker import did_you_mean

    mine = {k.split(".", 1)[1]: v for k, v in ck.overrides.items() if k.startswith(alias + ".")}
    params = [x.name for x in recipe.decls if isinstance(x, ast.Param)]
    uses = [x.alias for x in recipe.decls if isinstance(x, ast.Use)]
    for k in mine:
        head = k.split(".", 1)[0]
        if ("." not in k and k not in params) or ("." in k and head not in uses):
            hint = did_you_mean(k, params)
            raise ConfigError(f"--param {alias}.{k}: the imported recipe {recipe.path} has no param '{k}'"
                              + (f"; {hint}" if hint else f"; its params: {', '.join(params) or 'none'}"))
    return mine


def use_site(ck: _Checker, d: ast.Use, recipe: ast.Recipe) -> tuple[ast.Recipe, dict[str, Any], dict[str, ModelSpec]]:
    """Apply ``use "x.synth" as rt (name=value, ...)``: param values, model engines, nested ``b.name`` settings.

    A param gets a constant of the importer (its params usable); a model gets an engine call
    (``teacher=embedded()``, keeping the imported model's sampling unless the call sets it) or the
    name of one of the importer's models (``teacher=teacher``). Errors point at the use site.

    Returns:
        (the imported recipe with overridden model declarations, param values, models shared from the importer).
    """
    from synthlang.check.checker import did_you_mean

    params = {x.name: x for x in recipe.decls if isinstance(x, ast.Param)}
    models = {x.name: i for i, x in enumerate(recipe.decls) if isinstance(x, ast.Model)}
    uses = {x.alias: i for i, x in enumerate(recipe.decls) if isinstance(x, ast.Use)}
    decls = list(recipe.decls)
    presets: dict[str, Any] = {}
    specs: dict[str, ModelSpec] = {}
    for a in d.args:
        name = a.name or ""
        head, dot, rest = name.partition(".")
        if dot and head in uses:  # b.teacher: a setting for the import `b` of the imported recipe
            value = _literal_call(ck, a.value) if isinstance(a.value, ast.Call) else _literal(ck, a.value)
            u = decls[uses[head]]
            assert isinstance(u, ast.Use)
            decls[uses[head]] = dataclasses.replace(u, args=tuple(x for x in u.args if x.name != rest)
                                                    + (ast.Arg(rest, value, a.span),))
        elif name in params:
            want = params[name].type.name
            v = ck._const(a.value, want if want in ("str", "int", "float", "bool") else None)
            presets[name] = float(v) if want == "float" and isinstance(v, int) and not isinstance(v, bool) else v
        elif name in models:
            if isinstance(a.value, ast.Name) and a.value.id in ck.models:
                specs[name] = dataclasses.replace(ck.models[a.value.id], name=name)
            elif isinstance(a.value, ast.Call):
                old = decls[models[name]]
                assert isinstance(old, ast.Model)
                decls[models[name]] = dataclasses.replace(old, engine=keep_sampling(old.engine, _literal_call(ck, a.value)))
            else:
                ck.err(f"model '{name}' of {recipe.path} needs an engine call or one of this recipe's models", a.value.span,
                       hint=f"e.g. {name}=embedded() or {name}={next(iter(ck.models), 'teacher')}",
                       code="type-mismatch", name=name, expected="model")
        else:
            hint = did_you_mean(name, [*params, *models])
            ck.err(f"the imported recipe {recipe.path} has no param or model '{name}'", a.span,
                   hint=hint or f"its params: {', '.join(params) or 'none'}; its models: {', '.join(models) or 'none'}",
                   code="unknown-name", name=name, kind="use-setting", file=recipe.path)
    return dataclasses.replace(recipe, decls=tuple(decls)), presets, specs


def keep_sampling(old: ast.Call, new: ast.Call) -> ast.Call:
    """An engine call that replaces a model's, keeping the old call's sampling keys it does not set itself.

    ``model teacher = openai("x", temperature=0.8, max_tokens=96)`` overridden by
    ``embedded()`` (``--model teacher=embedded()`` or a use-site ``teacher=embedded()``) stays at
    temperature 0.8 and max_tokens 96; ``embedded(temperature=0)`` sets temperature, keeps max_tokens.
    """
    from synthlang.engines.base import SAMPLING_KEYS

    given = {a.name for a in new.args if a.name}
    kept = tuple(a for a in old.args if a.name in SAMPLING_KEYS and a.name not in given)
    return dataclasses.replace(new, args=tuple(new.args) + kept) if kept else new


def _literal(ck: _Checker, e: ast.Expr) -> ast.Expr:
    """An importer's constant expression as a literal (so the imported recipe need not know the importer's params)."""
    v = ck._const(e)
    if isinstance(v, list):
        return ast.ListExpr(tuple(ast.Literal(x, e.span) for x in v), e.span)
    return ast.Literal(v, e.span)


def _literal_call(ck: _Checker, call: ast.Call) -> ast.Call:
    return dataclasses.replace(call, args=tuple(dataclasses.replace(a, value=_literal(ck, a.value)) for a in call.args))


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
    ck.err(f"imported recipe '{alias}' ({sub.recipe.path}) has no {what} '{member}'", span,
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
