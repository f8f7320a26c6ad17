"""The checker: resolves names, types fields through the graph, collects every error.

Input: a parsed :class:`~synthlang.ast.Recipe`. Output: a
:class:`~synthlang.plan.program.Program`, or :class:`~synthlang.errors.Diagnostics`
holding *all* semantic errors sorted by position (miniwdl's habit).
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any

from synthlang import ast
from synthlang.check import relational  # derive/explode/group/pair/join/union steps
from synthlang.engines import ENGINE_KINDS, ENGINE_OPTIONS
from synthlang.engines.base import SAMPLING_KEYS, SamplingParams
from synthlang.errors import CheckError, ConfigError, Diagnostics, SourceError, Span
from synthlang.expr import FUNCTIONS, calls, evaluate, free_names, infer_type
from synthlang.ops import OPERATORS
from synthlang.ops.base import (
    KIND_BOOL,
    KIND_CHOICE,
    KIND_EXPR,
    KIND_FIELD,
    KIND_FLOAT,
    KIND_INT,
    KIND_LIST,
    KIND_MODEL,
    KIND_NODE,
    KIND_STR,
    KIND_TEMPLATE,
    SAMPLING_RANGES,
    range_problem,
)
from synthlang.ops.structured import KIND_JSON, MAX_SCHEMA_DEPTH  # papersa (issue 15): generate(schema=...)
from synthlang.outputs.shapes import FORMATS as EXPORT_FORMATS  # export formats and their options live there
from synthlang.outputs.shapes import check_options as check_export_options
from synthlang.outputs.shapes import options_for as _export_options_for
from synthlang.plan.keys import digest
from synthlang.plan.program import ExportSpec, ModelSpec, Program, SourceSpec, StepSpec
from synthlang.store.readonly import select_problem
from synthlang.templates import TemplateError, variables

from . import imports  # `use` declarations (relative: keeps this import block merge-friendly)

TYPES = ("str", "int", "float", "bool", "json", "list", "any", "number")
SOURCE_LOADERS = ("jsonl", "csv", "parquet", "hf", "sql")
SOURCE_OPTIONS = ("limit", "offset", "id", "max_field_bytes", "license", "citation")
SOURCE_LOADER_OPTIONS = {"hf": ("split",), "sql": ("db",)}
EXPORT_OPTIONS = tuple(dict.fromkeys(o for f in EXPORT_FORMATS for o in _export_options_for(f)))
MODEL_KEY_OPTIONS = ("revision", "trained_by")


def _hint(*parts: str | None) -> str | None:
    text = " ".join(p for p in parts if p)
    return text or None


def did_you_mean(name: str, candidates: list[str] | set[str]) -> str | None:
    """A hint naming the closest candidate, or ``None``."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def parse_param_value(text: str, type_name: str) -> Any:
    """Convert a ``--param name=value`` string to the param's declared type.

    Raises:
        ValueError: when ``text`` is not a value of that type.
    """
    if type_name == "int":
        return int(text)
    if type_name == "float":
        return float(text)
    if type_name == "bool":
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"{text!r} is not a bool (true/false)")
    return text


def project_root(recipe_dir: Path) -> Path:
    """The project directory a recipe's paths must stay in: the nearest folder from the recipe's
    own upwards that holds ``.git``; without one, the recipe's folder itself."""
    d = recipe_dir.resolve()
    for cand in (d, *d.parents):
        if (cand / ".git").exists():
            return cand
    return d


class _Checker:
    def __init__(self, recipe: ast.Recipe, param_overrides: dict[str, str], base_dir: Path,
                 allow_outside: bool = False) -> None:
        self.recipe = recipe
        self.allow_outside = allow_outside
        self.root = project_root(base_dir)
        self.path = recipe.path
        self.overrides = dict(param_overrides)
        self.base_dir = base_dir
        self.errors: list[SourceError] = []
        # imports (see imports.py): the chain of recipes being checked, for cycles; checked imports by alias
        self.stack: tuple[Path, ...] = (Path(recipe.path).resolve(),)
        self.imports: dict[str, _Checker] = {}
        self.bad_imports: set[str] = set()
        self.imported_steps: dict[str, StepSpec] = {}
        self.params: dict[str, Any] = {}
        self.param_types: dict[str, str] = {}
        self.models: dict[str, ModelSpec] = {}
        self.broken_models: set[str] = set()  # declared, but with an error already reported
        self.templates: dict[str, str] = {}
        self.template_spans: dict[str, Span] = {}
        self.template_files: dict[str, str] = {}  # template name → its .j2 path as written in the recipe
        self.sources: dict[str, SourceSpec] = {}
        self.steps: dict[str, StepSpec] = {}
        self.step_decls: dict[str, ast.Step] = {}
        self.fields: dict[str, dict[str, str]] = {}
        self.fps: dict[str, str] = {}
        self.loop_nodes: set[str] = set()   # names defined by loops (check/loops.py)
        self.trained_models: list[tuple[str, ast.Arg]] = []  # models declared with trained_by=LOOP
        self.preset_params: dict[str, Any] = {}        # set at the use site of this recipe (check/imports.py)
        self.preset_models: dict[str, ModelSpec] = {}  # models shared by the importer (`use ... (teacher=teacher)`)

    def err(self, msg: str, span: Span, hint: str | None = None, code: str = "check", **data: Any) -> None:
        self.errors.append(CheckError(msg, span, hint=hint, code=code, **data))

    # ------------------------------------------------------------------ driver
    def run(self) -> Program:
        decls = self.recipe.decls
        self._check_duplicates(decls)
        for d in decls:
            if isinstance(d, ast.Param):
                self._param(d)
        for name in self.overrides:
            aliases = [d.alias for d in decls if isinstance(d, ast.Use)]
            if "." in name and name.split(".", 1)[0] in aliases:
                continue  # --param alias.name: checked with the import (check/imports.py)
            if "." in name:
                raise ConfigError(f"--param {name}: the recipe imports nothing as '{name.split('.', 1)[0]}'"
                                  + (f"; imports: {', '.join(aliases)}" if aliases else ""))
            if name not in self.param_types:
                raise ConfigError(f"--param {name}: the recipe has no param '{name}'"
                                  + (f"; {did_you_mean(name, list(self.param_types))}" if did_you_mean(name, list(self.param_types)) else ""))
        for d in decls:
            if isinstance(d, ast.Model):
                self._model(d)
        if not self.models:
            self.models["default"] = ModelSpec("default", "embedded", "", SamplingParams())
        imports.load_imports(self, decls)  # after params and models: a use site may set an import's from ours
        for d in decls:
            if isinstance(d, ast.Template):
                self._template(d)
        for d in decls:
            if isinstance(d, ast.Source):
                self._source(d)
        from synthlang.ops.dialogue import expand as _expand_dialogues  # papersa (issue 15): dialogue -> turn steps

        decls = tuple(_expand_dialogues(decls, lambda e: self._const(e, "int"), self.err))
        for d in (x for x in decls if not isinstance(x, ast.Use)):  # imports: imports.load_imports
            if isinstance(d, ast.Step):
                self.step_decls[d.name] = d
            elif isinstance(d, ast.Use):
                self.err(f"'{type(d).__name__.lower()}' is not supported yet", d.span, code="unsupported")
        from synthlang.check.loops import check_loop, loop_node_names, order_with_loops

        for d in decls:
            if isinstance(d, ast.Loop):
                self.loop_nodes |= loop_node_names(d)
        order = self._order_steps()
        loops = []
        placed_loop_nodes = set(self.loop_nodes)
        self.loop_nodes = set()
        top: list[str] = []
        for item in order_with_loops(self, order, decls):
            if isinstance(item, ast.Loop):
                spec = check_loop(self, item, len(top))
                if spec is not None:
                    loops.append(spec)
            else:
                top.append(item)
                self._step(self.step_decls[item])
        self.loop_nodes = placed_loop_nodes
        order = top
        trainers = {lp.name: lp for lp in loops}
        for mname, arg in self.trained_models:
            lname = arg.value.id if isinstance(arg.value, ast.Name) else ""
            lp_decl = next((x for x in decls if isinstance(x, ast.Loop) and x.name == lname), None)
            if lp_decl is None:
                self.err(f"model '{mname}': trained_by= names no loop '{lname}'", arg.value.span, code="unknown-name",
                         name=lname, kind="loop", hint=did_you_mean(lname, [x.name for x in decls if isinstance(x, ast.Loop)]))
            elif lname in trainers and not trainers[lname].train:
                self.err(f"model '{mname}': loop '{lname}' has no train= command, so nothing trains this model",
                         arg.value.span, code="bad-option", name=lname, hint=f'add train="..." to loop {lname}')
        exports = [e for d in decls if isinstance(d, ast.Export) for e in [self._export(d)] if e is not None]
        budget: dict[str, Any] = {}
        for d in decls:
            if isinstance(d, ast.Budget):
                for a in d.args:
                    if a.name not in ("calls", "tokens", "usd"):
                        self.err(f"unknown budget '{a.name}'", a.span, hint="use calls=, tokens= or usd=", code="unknown-option",
                                 name=a.name, valid=["calls", "tokens", "usd"])
                    else:
                        budget[a.name] = self._const(a.value, "float" if a.name == "usd" else "int")
        if self.errors:   # one error per (position, message): a dialogue's turn steps share its stop expression
            seen: set[tuple[str, str]] = set()
            self.errors = [e for e in self.errors if (k := (str(e), repr(getattr(e, "span", None)))) not in seen
                           and not seen.add(k)]
            raise Diagnostics(self.errors)
        steps = list(self.imported_steps.values()) + [self.steps[n] for n in order]
        header = self.recipe.header
        prog = Program(
            recipe=self.recipe, name=self.recipe.name, description=header.description if header else None,
            base_dir=self.base_dir, params=self.params, models=self.models, sources=self.sources,
            templates=self.templates, steps=steps, exports=exports, budget=budget, loops=loops,
        )
        prog.fingerprint = digest({"sources": {k: v.fingerprint for k, v in self.sources.items()},
                                   "steps": [s.fingerprint for s in steps], "loops": [lp.fingerprint for lp in loops]})
        return prog

    def _check_duplicates(self, decls: tuple[ast.Decl, ...]) -> None:
        seen: dict[str, ast.Decl] = {}
        for d in decls:
            name = getattr(d, "name", None) if not isinstance(d, (ast.Export, ast.Budget)) else None
            if isinstance(d, ast.Use):
                name = d.alias
            if name is None:
                continue
            if name in seen:
                first = seen[name]
                self.err(f"'{name}' is already defined at line {first.span.line}", d.span,
                         hint="rename one of them", code="duplicate-definition", name=name, first_line=first.span.line)
            else:
                seen[name] = d

    # ------------------------------------------------------------- constants
    def _const(self, e: ast.Expr, want: str | None = None) -> Any:
        """Evaluate an expression that may only use literals and params."""
        for n in free_names(e):
            if n.id not in self.params:
                hint = did_you_mean(n.id, list(self.params))
                self.err(f"unknown name '{n.id}' in a constant expression", n.span, hint=hint or "only params can be used here",
                         code="unknown-name", name=n.id)
                return None
        for c in calls(e):
            if c.func not in FUNCTIONS:
                self.err(f"unknown function '{c.func}'", c.span, hint=did_you_mean(c.func, list(FUNCTIONS)),
                         code="unknown-function", name=c.func)
                return None
        try:
            v = evaluate(e, {}, self.params)
        except Exception as exc:  # noqa: BLE001 - reported as a positioned error
            self.err(f"cannot evaluate: {exc}", e.span, code="eval")
            return None
        if want and v is not None and not _is_type(v, want):
            self.err(f"expected a value of type {want}, got {type(v).__name__} {v!r}", e.span,
                     code="type-mismatch", expected=want, found=type(v).__name__)
        return v

    # ------------------------------------------------------------------ decls
    def _param(self, d: ast.Param) -> None:
        t = d.type.name
        if t not in ("str", "int", "float", "bool"):
            self.err(f"unknown param type '{t}'", d.type.span, hint="use str, int, float or bool", code="unknown-type", name=t)
            return
        self.param_types[d.name] = t
        if d.name in self.overrides:
            raw = self.overrides[d.name]
            try:
                self.params[d.name] = parse_param_value(raw, t)
            except ValueError:
                self.err(f"--param {d.name}={raw}: expected a value of type {t}", d.span,
                         hint=f"param {d.name} is declared as {t} here", code="param-type", name=d.name, expected=t, value=raw)
                self.params[d.name] = None  # known but broken: no cascade of unknown-name errors
            return
        if d.name in self.preset_params:  # set at the importer's use site (type-checked there)
            self.params[d.name] = self.preset_params[d.name]
            return
        if d.default is None:
            self.err(f"param '{d.name}' has no default and no --param {d.name}=VALUE was given", d.span,
                     hint=f"pass --param {d.name}=VALUE or give a default: param {d.name}: {t} = ...",
                     code="missing-param", name=d.name)
            self.params[d.name] = None
            return
        v = self._const(d.default, t)
        if t == "float" and isinstance(v, int):
            v = float(v)
        self.params[d.name] = v

    def _model(self, d: ast.Model) -> None:
        if d.name in self.preset_models:  # the importer's own model (`use ... (teacher=teacher)`)
            self.models[d.name] = self.preset_models[d.name]
            return
        call = d.engine
        if call.func not in ENGINE_KINDS:
            self.err(f"unknown engine '{call.func}'", call.span,
                     hint=did_you_mean(call.func, list(ENGINE_KINDS)) or f"engines: {', '.join(ENGINE_KINDS)}",
                     code="unknown-engine", name=call.func, valid=list(ENGINE_KINDS))
            self.broken_models.add(d.name)
            return
        pos = call.positional
        model_id = ""
        if pos:
            v = self._const(pos[0], "str")
            model_id = v or ""
        sampling: dict[str, Any] = {}
        opts: dict[str, Any] = {}
        key_opts: dict[str, Any] = {}
        for name, arg in call.kw().items():
            if name == "trained_by":  # the student a loop's train= command writes (execute/runner.py)
                if isinstance(arg.value, ast.Name):
                    key_opts[name] = arg.value.id
                    self.trained_models.append((d.name, arg))
                else:
                    self.err("trained_by= names a loop that has train=", arg.value.span, code="type-mismatch",
                             expected="loop name")
                continue
            v = self._const(arg.value)
            if name in SAMPLING_KEYS:
                if (problem := range_problem(name, v, SAMPLING_RANGES.get(name))) is not None:
                    self.err(problem, arg.value.span, code="out-of-range", name=name, range=list(SAMPLING_RANGES[name]))
                if name == "stop":
                    v = tuple(v) if isinstance(v, list) else (v,)
                sampling[name] = v
            elif name in MODEL_KEY_OPTIONS:
                key_opts[name] = v
            elif self._engine_option(call.func, name, v, arg):
                opts[name] = v
        try:
            sp = SamplingParams(**sampling)
        except TypeError as exc:
            self.err(f"bad sampling params: {exc}", call.span, code="bad-option")
            sp = SamplingParams()
        self.models[d.name] = ModelSpec(d.name, call.func, model_id, sp, opts, key_opts, d.span)

    def _confined(self, p: Path, rel: str, span: Span, what: str) -> bool:
        """False (and an error) when ``p`` (symlinks resolved) leaves the project directory."""
        if self.allow_outside or p.is_relative_to(self.root):
            return True
        self.err(f"{what} path '{rel}' leads outside the project directory {self.root}", span,
                 hint="recipes may only read and write inside their project (the git repository holding the recipe, "
                      "or its folder); pass --allow-outside if you trust this recipe",
                 code="outside-project", path=rel, root=str(self.root))
        return False

    def _engine_option(self, engine: str, name: str, value: Any, arg: Any) -> bool:
        """Check one engine option against :data:`synthlang.engines.ENGINE_OPTIONS`; report and drop a bad one."""
        table = ENGINE_OPTIONS.get(engine, {})
        if name not in table:
            valid = [*table, *SAMPLING_KEYS, *MODEL_KEY_OPTIONS]
            self.err(f"engine '{engine}' has no option '{name}'", arg.span,
                     hint=did_you_mean(name, valid) or f"options of {engine}: {', '.join(table) or 'none'} and sampling params",
                     code="unknown-option", name=name, engine=engine, valid=sorted(valid))
            return False
        types = table[name]
        if value is not None and not (isinstance(value, types) and not (isinstance(value, bool) and bool not in types)):
            self.err(f"option '{name}' of engine '{engine}' must be {' or '.join(t.__name__ for t in types)}, "
                     f"not {type(value).__name__}", arg.span, code="bad-option", name=name, engine=engine)
            return False
        return True

    def _resolve_path(self, rel: str, span: Span, what: str) -> Path | None:
        if imports.resolve(self.base_dir, rel) is None:  # a NUL byte, a name too long: no file can have it
            self.err(f"{what} path is not a usable file name: {rel!r}", span, code="missing-file", path=rel)
            return None
        p = (self.base_dir / rel).resolve()
        if not self._confined(p, rel, span, what):
            return None
        if not p.exists():
            self.err(f"{what} file not found: {rel}", span, hint=f"paths are relative to the recipe's folder ({imports.shown(self.base_dir) or '.'})",
                     code="missing-file", path=rel)
            return None
        return p

    def _template(self, d: ast.Template) -> None:
        if d.file is not None:
            p = self._resolve_path(d.file, d.span, "template")
            if p is None:
                return
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.err(f"cannot read template {d.file}: {exc}", d.span, code="missing-file")
                return
        else:
            text = d.text or ""
        try:
            variables(text, d.name)
        except TemplateError as exc:
            self.err(str(exc), d.span, code=exc.code)
            if exc.code != "template-unsafe":   # an unsafe template still parses: no follow-on errors
                return
        self.templates[d.name] = text
        self.template_spans[d.name] = d.span
        if d.file is not None:
            self.template_files[d.name] = d.file

    def _source(self, d: ast.Source) -> None:
        call = d.loader
        if call.func not in SOURCE_LOADERS:
            self.err(f"unknown source loader '{call.func}'", call.span,
                     hint=did_you_mean(call.func, list(SOURCE_LOADERS)) or f"loaders: {', '.join(SOURCE_LOADERS)}",
                     code="unknown-loader", name=call.func, valid=list(SOURCE_LOADERS))
            return
        pos = call.positional
        what = "an SQL query" if call.func == "sql" else "a folder path" if call.func == "hf" else "a file path"
        if len(pos) != 1:
            self.err(f"{call.func}() takes one positional argument ({what}), got {len(pos)}", call.span,
                     hint=f'e.g. source {d.name} = {call.func}("{"SELECT ..." if call.func == "sql" else "data/x"}")',
                     code="missing-argument" if not pos else "positional-option", loader=call.func)
            if not pos:
                return
        first = self._const(pos[0], "str")
        args: dict[str, Any] = {}
        path: Path | None = None
        if call.func == "sql":
            args["query"] = first
            problem = select_problem(first) if isinstance(first, str) else None
            if problem is not None:   # untrusted input: one read-only SELECT only (store/readonly.py)
                self.err(f"sql source '{d.name}': {problem}", pos[0].span, code="sql-not-select",
                         hint="a sql source reads earlier runs with one SELECT (or WITH ... SELECT); it cannot "
                              "write, change the schema, attach databases or read files")
        elif isinstance(first, str):
            path = self._resolve_path(first, pos[0].span, "source")
        valid = SOURCE_OPTIONS + SOURCE_LOADER_OPTIONS.get(call.func, ())
        declared = {f.name for f in d.fields}
        for name, arg in call.kw().items():
            if name not in valid:
                self.err(f"unknown option '{name}' for {call.func}()", arg.span,
                         hint=_hint(did_you_mean(name, list(valid)), f"options: {', '.join(valid)}"),
                         code="unknown-option", name=name, operator=call.func, valid=list(valid))
                continue
            if name == "id":
                idv = arg.value
                fid = idv.id if isinstance(idv, ast.Name) else idv.value if isinstance(idv, ast.Literal) and isinstance(idv.value, str) else None
                if fid is None or fid not in declared:
                    self.err(f"id= must name a field of source '{d.name}'", idv.span,
                             hint=did_you_mean(str(fid), declared) or f"fields: {', '.join(sorted(declared)) or '(none declared)'}",
                             code="unknown-field", name=fid, available=sorted(declared))
                    continue
                args[name] = fid
            elif name in ("split", "db", "license", "citation"):   # license/citation: read by the dataset card
                v = self._const(arg.value, "str")
                if name == "db" and isinstance(v, str):
                    db = imports.resolve(self.base_dir, v)
                    if db is None:
                        self.err(f"db= is not a usable file name: {v!r}", arg.value.span, code="bad-value", name=name)
                        continue
                    confined = getattr(self, "_confined", None)  # path confinement, where the checker has it
                    if confined is not None and not confined(db, v, arg.value.span, "database"):
                        continue
                    v = str(db)
                args[name] = v
            else:
                v = self._const(arg.value, "int")
                if isinstance(v, int) and v < 0:
                    self.err(f"{name}= must be 0 or more, not {v}", arg.value.span, code="bad-value", name=name)
                args[name] = v
        if not d.fields:
            self.err(f"source '{d.name}' declares no fields", d.span,
                     hint=f"add a schema: source {d.name} = {call.func}(...) {{ question: str }}",
                     code="missing-schema", name=d.name)
        fields: dict[str, str] = {}
        derived: list[tuple[str, ast.Expr]] = []
        env: dict[str, str] = {}
        for f in d.fields:
            if f.name in env:
                self.err(f"field '{f.name}' is defined twice in source '{d.name}'", f.span, code="duplicate-definition", name=f.name)
                continue
            if isinstance(f, ast.FieldDecl):
                if f.type.name not in TYPES:
                    self.err(f"unknown type '{f.type.name}'", f.type.span, hint=did_you_mean(f.type.name, list(TYPES)),
                             code="unknown-type", name=f.type.name)
                fields[f.name] = f.type.name
                env[f.name] = f.type.name
            else:
                t = self._check_expr(f.expr, env)
                derived.append((f.name, f.expr))
                env[f.name] = t
        # Seed rows are content-addressed, so neither the file's name nor limit/offset enter the
        # fingerprint: growing `limit` or editing one line reuses every other row.
        fp = digest({"loader": call.func, "fields": fields, "derived": [(n, repr(e)) for n, e in derived]})
        self.sources[d.name] = SourceSpec(d.name, call.func, path, args, fields, tuple(derived), fp, d.span)
        self.fields[d.name] = dict(env)
        self.fps[d.name] = fp

    def _n_from(self, e: ast.Expr, t: str) -> None:
        """``n_from=``: an expression whose type cannot be a number, or a constant outside ``0..MAX_SAMPLES``, is an
        error here rather than a run-time one (a field-dependent value is still checked per row at run time)."""
        from synthlang.ops.base import MAX_SAMPLES

        if t == "str" or t == "bool" or t.startswith("list") or t == "json":
            self.err(f"n_from must give a whole number from 0 to {MAX_SAMPLES}, but this expression gives {t}", e.span,
                     code="type-mismatch", name="n_from", hint="convert it: n_from=int(x)")
            return
        if any(n.id not in self.params for n in free_names(e)) or calls(e):
            return
        try:
            val = evaluate(e, {}, self.params)
        except Exception:   # noqa: BLE001 - a constant that does not evaluate is left to the run's per-row check
            return
        if isinstance(val, bool) or not isinstance(val, int | float) or val != val or not 0 <= val <= MAX_SAMPLES \
                or val != int(val):
            self.err(f"n_from must give a whole number from 0 to {MAX_SAMPLES}, not {val!r}", e.span,
                     code="out-of-range", name="n_from", range=[0, MAX_SAMPLES])

    def _check_expr(self, e: ast.Expr, env: dict[str, str]) -> str:
        for n in free_names(e):
            if n.id not in env and n.id not in self.params:
                self.err(f"unknown field '{n.id}'", n.span, hint=did_you_mean(n.id, list(env) + list(self.params)),
                         code="unknown-field", name=n.id, available=sorted(env))
        for c in calls(e):
            fn = FUNCTIONS.get(c.func)
            if fn is None:
                self.err(f"unknown function '{c.func}'", c.span, hint=did_you_mean(c.func, list(FUNCTIONS)),
                         code="unknown-function", name=c.func)
            elif not (fn.arity[0] <= len(c.args) <= fn.arity[1]):
                self.err(f"{c.func}() takes {fn.arity[0]}" + (f" to {fn.arity[1]}" if fn.arity[1] != fn.arity[0] else "")
                         + f" argument(s), got {len(c.args)}", c.span, code="arity", name=c.func)
        t, errs = infer_type(e, {**{k: _ptype(v) for k, v in self.params.items()}, **env})
        self.errors.extend(errs)
        return t

    # ------------------------------------------------------------------ steps
    def _input_name(self, d: ast.Step) -> tuple[str | None, Span]:
        pos = d.op.positional
        if not pos:
            return None, d.op.span
        first = pos[0]
        return imports.qualified(first), first.span

    def _order_steps(self) -> list[str]:
        deps: dict[str, str | None] = {}
        for name, d in self.step_decls.items():
            inp, span = self._input_name(d)
            if inp is None:
                self.err(f"step '{name}' needs an input: the first argument names a source or step", span,
                         hint=f"e.g. step {name} = {d.op.func}(seeds, ...)", code="missing-input")
                deps[name] = None
                continue
            if inp in self.loop_nodes:
                deps[name] = None
                continue
            if inp not in self.step_decls and inp not in self.sources:
                known = list(self.step_decls) + list(self.sources)
                base, _, mode = inp.rpartition(".")
                if mode in ("all", "new") and (base in self.step_decls or base in self.sources):
                    self.err(f"'{inp}' is only readable inside the loop that feeds '{base}'", span,
                             hint=f"after the loop, '{base}' holds every row (the pool and all rows fed)",
                             code="loop-read", name=inp)
                    deps[name] = None
                    continue
                if "." in inp:  # alias.name of an import
                    imports.pull(self, inp, span)
                    deps[name] = None
                    continue
                self.err(f"unknown source or step '{inp}'", span, hint=did_you_mean(inp, known),
                         code="unknown-name", name=inp, kind="input")
                deps[name] = None
                continue
            deps[name] = inp if inp in self.step_decls else None
        return self._toposort({n: [x for x in [deps.get(n)] if x] + self._node_deps(d)
                               for n, d in self.step_decls.items()})

    def _node_deps(self, d: ast.Step) -> list[str]:
        """Steps a step reads through ``node`` options (``with=``, ``against=``): they must run before it."""
        op = OPERATORS.get(d.op.func)
        if op is None:
            return []
        out = []
        for a in d.op.args:
            spec = op.options.get(a.name) if a.name else None
            if spec is not None and spec.kind == KIND_NODE and isinstance(a.value, ast.Name) and a.value.id in self.step_decls:
                out.append(a.value.id)
        return out

    def _toposort(self, deps: dict[str, list[str]]) -> list[str]:
        """Steps in declaration order, each after the steps it reads; reports cycles (iterative DFS)."""
        ordered: list[str] = []
        state: dict[str, int] = {}  # 1: on the current path, 2: placed
        for root in deps:
            if state.get(root):
                continue
            path: list[str] = [root]
            stack: list[tuple[str, int]] = [(root, 0)]
            state[root] = 1
            while stack:
                node, k = stack[-1]
                nxt = deps.get(node, [])
                if k < len(nxt):
                    stack[-1] = (node, k + 1)
                    dep = nxt[k]
                    if dep not in deps:
                        continue
                    if state.get(dep) == 1:
                        cyc = path[path.index(dep):] + [dep]
                        self.err(f"dependency cycle: {' -> '.join(cyc)}", self.step_decls[dep].span,
                                 hint="a step cannot read its own output; use a loop for rounds", code="dependency-cycle",
                                 cycle=cyc)
                        continue
                    if not state.get(dep):
                        state[dep] = 1
                        path.append(dep)
                        stack.append((dep, 0))
                    continue
                stack.pop()
                path.pop()
                state[node] = 2
                ordered.append(node)
        return ordered

    def _step(self, d: ast.Step) -> None:
        op = OPERATORS.get(d.op.func)
        inp, _ = self._input_name(d)
        if op is None:
            self.err(f"unknown operator '{d.op.func}'", d.op.span,
                     hint=did_you_mean(d.op.func, list(OPERATORS)) or f"operators: {', '.join(sorted(OPERATORS))}",
                     code="unknown-operator", name=d.op.func, valid=sorted(OPERATORS))
            return
        if inp is None or inp not in self.fields:
            return
        fields_in = self.fields[inp]  # shared, never mutated: copying it per step is quadratic in a long chain
        opts: dict[str, Any] = {}
        for a in d.op.args[1:]:
            if a.name is None:
                self.err(f"{op.name}() takes one positional argument (its input); name the others",
                         a.span, hint=f"options: {', '.join(op.options)}", code="positional-option")
        kw = d.op.kw()
        model: ModelSpec | None = None
        free: list[tuple[str, ast.Arg]] = []
        for name, arg in kw.items():
            spec = op.options.get(name)
            if spec is None and op.extra.get("free"):
                free.append((name, arg))  # derive/group: every other keyword is a new field (check/relational.py)
                continue
            if spec is None:
                self.err(f"unknown option '{name}' for operator '{op.name}'", arg.span,
                         hint=_hint(did_you_mean(name, list(op.options)), f"valid options: {', '.join(op.options)}"),
                         code="unknown-option", name=name, operator=op.name, valid=list(op.options))
                continue
            opts[name] = self._option(spec, arg, fields_in)
        for name, spec in op.options.items():
            if name not in opts:
                opts[name] = spec.default
        for node_opt, field_opts in op.extra.get("node_fields", {}).items():   # papersa: mixture's weight/key
            node = opts.get(node_opt)
            for fo, fallback in field_opts:
                fname = opts.get(fo) or opts.get(fallback)
                if isinstance(node, str) and node in self.fields and isinstance(fname, str) and fname not in self.fields[node]:
                    self.err(f"{op.name}(): the rows of '{node}' have no field '{fname}' ({fo}=)",
                             kw[fo].span if fo in kw else d.op.span, code="unknown-field", name=fname,
                             available=sorted(self.fields[node]),
                             hint=did_you_mean(fname, list(self.fields[node])) or f"fields of {node}: {', '.join(sorted(self.fields[node]))}")
        for name in op.extra.get("required", ()):   # papersa (issue 15): options an operator cannot do without
            if opts.get(name) is None and name not in kw:
                self.err(f"{op.name}() needs {name}=", d.op.span, code="missing-argument", name=name, operator=op.name,
                         hint=f"{name}: {op.options[name].doc}")
        if op.select is not None:
            op = op.select(opts)
            for name, spec in op.options.items():
                if name not in opts:
                    opts[name] = spec.default
        # issue 12: inputs one (operator, mode) cannot run without (judge pairwise needs response_b, ...)
        for oname, msg, hint in op.missing_inputs(opts):
            self.err(f"{op.name}(): {msg}", kw[oname].span if oname in kw else d.op.span, hint=hint,
                     code="missing-option", operator=op.name, name=oname)
        for name, spec in op.options.items():  # a defaulted field option is checked like a written one
            if spec.kind == KIND_FIELD and name not in kw and isinstance(spec.default, str) and spec.default not in fields_in:
                self.err(f"{op.name}() reads field '{spec.default}' by default ({name}={spec.default}), "
                         f"but the rows of '{inp}' have no such field", d.op.span,
                         hint=f"name the field with {name}=FIELD; fields here: {', '.join(sorted(fields_in))}",
                         code="unknown-field", name=spec.default, option=name, available=sorted(fields_in))
        if op.resolve is not None:   # options that depend on the graph (verify's answer type)
            opts = op.resolve(opts, fields_in, lambda f, _inp=inp: self._producer_opts(_inp, f))
        if op.uses_model:
            mname = opts.get("model")
            if mname is None:
                mname = next(iter(self.models))
                opts["model"] = mname
            model = self.models.get(mname)
            self._engine_directives(d, op, opts, model, kw)
            if opts.get("prompt") is None:
                opts["prompt"] = _default_prompt(op)
            # template variables must exist at this point of the graph
            avail = set(fields_in) | {"input"} | set(self.params) | set(op.template_vars)
            for key in ("prompt", "system"):
                text = opts.get(key)
                if text is None:
                    continue
                try:
                    vs = variables(text)
                except TemplateError as exc:
                    self.err(str(exc), kw[key].span if key in kw else d.span, code=exc.code)
                    continue
                missing = sorted(vs - avail)
                tval = kw[key].value if key in kw else None
                tname = tval.id if isinstance(tval, ast.Name) else None
                tfile = self.template_files.get(tname) if tname else None
                for v in missing:
                    where = kw[key].span if key in kw else d.span
                    inside = f" ({tfile} line {_first_line_using(text, v)})" if tfile else ""
                    self.err(f"template variable '{v}'{inside} is not a field at step '{d.name}'", where,
                             hint=did_you_mean(v, avail) or f"available: {', '.join(sorted(avail))}",
                             code="template-variable", name=v, step=d.name, available=sorted(avail),
                             **({"template_file": tfile} if tfile else {}))
        if relational.is_relational(op):
            fields_rel = relational.check_step(self, d, op, opts, fields_in, free)
            if fields_rel is None:
                return
            op_outputs = relational.outputs_for(op, fields_rel)
        else:
            fields_rel, op_outputs = None, op.outputs
        # outputs
        rename: dict[str, str] = {o.name: o.name for o in op_outputs}
        out_types = {o.name: o.type for o in op_outputs}
        explicit: dict[str, ast.Output] = {}
        if d.outputs:
            if len(d.outputs) > len(op_outputs):
                self.err(f"operator '{op.name}' has {len(op_outputs)} output(s) "
                         f"({', '.join(o.name for o in op_outputs)}), but {len(d.outputs)} are named",
                         d.outputs[len(op_outputs)].span, code="too-many-outputs", operator=op.name)
            for spec_out, o in zip(op_outputs, d.outputs, strict=False):
                rename[spec_out.name] = o.name
                explicit[o.name] = o
        fields_out = dict(fields_in) if op.inherit else {}
        replaced = relational.replaces(op, fields_rel)
        for orig, new in rename.items():
            ex = explicit.get(new)
            if ex is not None and ex.replace and new not in fields_in:
                self.err(f"'-> replace {new}': step '{d.name}' has no field '{new}' to replace", ex.span,
                         hint=did_you_mean(new, list(fields_in)) or f"drop 'replace' to add '{new}' as a new field",
                         code="replace-unknown-field", name=new, step=d.name)
            if new in fields_out and not (ex is not None and ex.replace) and orig not in replaced \
                    and orig not in op.extra.get("state_outputs", ()):   # papersa: dialogue_turn updates its state
                span = ex.span if ex is not None else d.span
                self.err(f"step '{d.name}' output '{new}' would overwrite the existing field '{new}'", span,
                         hint=f"rename it (-> {new}_2) or write '-> replace {new}' to overwrite on purpose",
                         code="shadowed-field", name=new, step=d.name)
            fields_out[new] = (str(ex.type) if ex is not None and ex.type is not None else out_types[orig])
        node_fps = relational.node_fingerprints(self, op, opts)  # join/union: the other node's content too
        fp = digest({
            "op": op.name, "input": self.fps.get(inp, inp), **({"nodes": node_fps} if node_fps else {}),
            "opts": {k: relational.opt_key(v) for k, v in opts.items() if k != "model"},
            "model": self._model_key(model), "rename": rename,
        })
        self.steps[d.name] = StepSpec(d.name, op, inp, opts, rename, fields_in, fields_out, fp, model, d.span)
        self.fields[d.name] = fields_out
        self.fps[d.name] = fp

    def _json_option(self, spec: Any, v: Any) -> Any:
        """papersa (issue 15): a JSON-schema option, parsed; a positioned error when it is not JSON or not usable."""
        import json as _json

        from synthlang.ops.structured import schema_problem

        raw = self._const(v)
        if isinstance(raw, dict):   # an object literal: schema={type: "object", properties: {...}}
            value: Any = raw
        elif not isinstance(raw, str):
            self.err(f"option '{spec.name}' needs a JSON schema: an object literal or a JSON string", v.span,
                     code="bad-schema", name=spec.name)
            return None
        else:
            try:
                value = _json.loads(raw)
            except RecursionError:
                self.err(f"option '{spec.name}': the JSON nests too deeply (at most {MAX_SCHEMA_DEPTH} levels)", v.span,
                         code="bad-schema", name=spec.name)
                return None
            except _json.JSONDecodeError as exc:
                self.err(f"option '{spec.name}' is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno} of the string)",
                         v.span, code="bad-schema", name=spec.name)
                return None
        problem = schema_problem(value)
        if problem is not None:
            self.err(f"option '{spec.name}': {problem}", v.span, code="bad-schema", name=spec.name,
                     hint='e.g. schema={type: "object", properties: {skill: {type: "string"}}}')
            return None
        return value

    def _engine_directives(self, d: ast.Step, op: Any, opts: dict[str, Any], model: ModelSpec | None,
                           kw: dict[str, Any]) -> None:
        """papersa (issue 15): score / prefix continuation need an engine that can (embedded, vllm); name the one that cannot."""
        from synthlang.engines.base import DIRECTIVE_ENGINES

        want = op.extra.get("directives")
        if model is None or not callable(want):
            return
        for name in want(opts):
            if model.kind in DIRECTIVE_ENGINES.get(name, ()):
                continue
            what = {"continue": "prefix continuation (prefix=)", "score": "teacher-forced scoring (score)"}[name]
            arg = kw.get("prefix") if name == "continue" else kw.get("model")
            self.err(f"step '{d.name}': {what} needs token-level access that engine '{model.kind}' "
                     f"(model '{model.name}', {model.model_id}) does not give",
                     arg.span if arg is not None else d.op.span, code="engine-unsupported", engine=model.kind,
                     hint=f"use a model on {' or '.join(e for e in DIRECTIVE_ENGINES[name] if e != 'fake')}: embedded() or vllm(\"...\")")

    def _producer_opts(self, node: str, field_name: str) -> dict[str, Any] | None:
        """The options of the step upstream of ``node`` that added ``field_name`` (``None``: a source or unknown)."""
        seen: set[str] = set()
        while node in self.steps and node not in seen:
            seen.add(node)
            st = self.steps[node]
            if field_name in st.rename.values():
                return st.opts
            node = st.input
        return None

    def _option(self, spec: Any, arg: ast.Arg, fields: dict[str, str]) -> Any:
        v = arg.value
        kind = spec.kind
        if kind == KIND_MODEL:
            if isinstance(v, ast.Name) and v.id in self.models:
                return v.id
            if isinstance(v, ast.Name) and v.id in self.broken_models:
                return next(iter(self.models))  # its declaration's error is reported; no follow-on errors
            q = imports.qualified(v)
            if q is not None and "." in q:
                return q if imports.find(self, "model", q, v.span) is not None else None
            name = v.id if isinstance(v, ast.Name) else None
            self.err(f"unknown model '{name or v}'", v.span,
                     hint=did_you_mean(name or "", list(self.models)) or f"declared models: {', '.join(self.models)}",
                     code="unknown-name", name=name, kind="model")
            return None
        if kind == KIND_TEMPLATE:
            q = imports.qualified(v)
            if q is not None and "." in q:
                return imports.find(self, "template", q, v.span)
            if isinstance(v, ast.Name):
                if v.id in self.templates:
                    return self.templates[v.id]
                self.err(f"unknown template '{v.id}'", v.span,
                         hint=did_you_mean(v.id, list(self.templates))
                         or (f"templates: {', '.join(self.templates)}" if self.templates
                             else f'declare it (template {v.id} = file("{v.id}.j2")) or pass a string'),
                         code="unknown-name", name=v.id, kind="template")
                return None
            if isinstance(v, ast.Literal) and isinstance(v.value, str):
                try:
                    variables(v.value)
                except TemplateError as exc:
                    self.err(str(exc), v.span, code=exc.code)
                return v.value
            self.err(f"option '{spec.name}' needs a template name or a string", v.span, code="type-mismatch")
            return None
        if kind == KIND_FIELD:
            if isinstance(v, ast.Name):
                if v.id in fields:
                    return v.id
                self.err(f"unknown field '{v.id}'", v.span, hint=did_you_mean(v.id, list(fields)) or f"fields here: {', '.join(sorted(fields))}",
                         code="unknown-field", name=v.id, available=sorted(fields))
                return None
            if isinstance(v, ast.Literal) and isinstance(v.value, str) and v.value in fields:
                return v.value
            self.err(f"option '{spec.name}' needs a field name", v.span, hint=f"fields here: {', '.join(sorted(fields))}",
                     code="type-mismatch")
            return None
        if kind == KIND_NODE:
            if isinstance(v, ast.Name) and v.id in self.fields:
                return v.id
            q = imports.qualified(v)
            if q is not None and q in self.fields:  # a loop pool read: pool.all / pool.new (check/loops.py)
                return q
            name = v.id if isinstance(v, ast.Name) else None
            if name is not None and name in self.step_decls:
                # a declared step that is not checked yet: it reads this one (the `dependency-cycle` error says so)
                # or it failed its own checks; "neither a source nor a step" would be wrong
                return None
            self.err(f"option '{spec.name}' needs the name of a source or step" + (f"; '{name}' is neither" if name else ""), v.span,
                     hint=did_you_mean(name or "", list(self.fields)) or f"sources and steps: {', '.join(sorted(self.fields))}",
                     code="unknown-name", name=name, kind="node")
            return None
        if kind == KIND_EXPR:
            t = self._check_expr(v, fields)
            if spec.name == "n_from":   # breaker: a per-row sample count (ops/structured.py), checked when knowable
                self._n_from(v, t)
            return v
        if kind == "other_expr":  # join's right_on: checked against the other node (check/relational.py)
            return v
        if kind == KIND_JSON:   # papersa (issue 15): generate(schema='{...}'), a JSON object in a string
            return self._json_option(spec, v)
        want = {KIND_INT: "int", KIND_FLOAT: "float", KIND_BOOL: "bool", KIND_STR: "str", KIND_LIST: "list"}.get(kind)
        if kind == KIND_CHOICE:
            if isinstance(v, ast.Name) and v.id not in self.params:
                val: Any = v.id
            else:
                val = self._const(v)
            if val not in spec.choices:
                self.err(f"option '{spec.name}' must be one of {', '.join(map(str, spec.choices))}, not {val!r}", v.span,
                         code="bad-choice", name=spec.name, valid=list(spec.choices))
            return val
        val = self._const(v, want)
        if want == "float" and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if (problem := range_problem(spec.name, val, getattr(spec, "range", None))) is not None:   # ops/base.py
            self.err(problem, v.span, code="out-of-range", name=spec.name, range=list(spec.range))
        return val

    def _export(self, d: ast.Export) -> ExportSpec | None:
        """An export of a local name or of ``alias.name`` of an import; options checked against the step's fields."""
        from dataclasses import replace

        target = imports.qualified(d.step)
        if target is not None and "." in target and not imports.pull(self, target, d.step.span):
            return None
        if target is not None and target in self.step_decls and target not in self.steps:
            return None  # the step has errors of its own, already reported
        step = ast.Name(target, d.step.span) if target is not None else d.step
        spec = self._export_local(replace(d, step=step, options=()))
        if spec is None:
            return None
        return replace(spec, options=self._export_options(d, self.fields.get(spec.step, {})))

    def _export_local(self, d: ast.Export) -> ExportSpec | None:
        if not isinstance(d.step, ast.Name):
            self.err("export needs a step or source name", d.step.span, code="unknown-name")
            return None
        if d.step.id not in self.steps and d.step.id not in self.sources and d.step.id not in self.loop_nodes:
            self.err(f"unknown step '{d.step.id}'", d.step.span, hint=did_you_mean(d.step.id, list(self.steps) + list(self.sources)),
                     code="unknown-name", name=d.step.id, kind="step")
            return None
        if d.format not in EXPORT_FORMATS:
            self.err(f"unknown export format '{d.format}'", d.span, hint=f"formats: {', '.join(EXPORT_FORMATS)}",
                     code="unknown-format", name=d.format, valid=list(EXPORT_FORMATS))
            return None
        opts = {a.name: self._const(a.value) for a in d.options if a.name}
        if not self._confined((self.base_dir / d.path).resolve(), d.path, d.span, "export"):
            return None
        return ExportSpec(d.step.id, (self.base_dir / d.path), d.format, opts, d.span)

    def _model_key(self, m: ModelSpec | None) -> Any:
        """:func:`_model_key`, computed once per model."""
        if m is None:
            return None
        cache = self.__dict__.setdefault("_model_keys", {})
        if m.name not in cache:
            cache[m.name] = _model_key(m)
        return cache[m.name]

    def _export_options(self, d: ast.Export, fields: dict[str, str]) -> dict[str, Any]:
        """The export's options, checked by :func:`synthlang.outputs.shapes.check_options` (formats and their options)."""
        return check_export_options(d.format, d.options, fields, self.templates, self.err, self._const, d.span)


_PROMPTS: dict[str, str | None] = {}


def _default_prompt(op: Any) -> str | None:
    """An operator mode's default prompt text, read once per process (keyed by file: modes own their prompts)."""
    key = op.default_prompt or op.name
    if key not in _PROMPTS:
        _PROMPTS[key] = op.default_prompt_text()
    return _PROMPTS[key]


def _first_line_using(text: str, name: str) -> int:
    """1-based line of a template where ``name`` first appears as a word (1 when not found)."""
    import re

    pat = re.compile(rf"\b{re.escape(name)}\b")
    for i, line in enumerate(text.splitlines(), start=1):
        if pat.search(line):
            return i
    return 1


def _is_type(v: Any, t: str) -> bool:
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "bool":
        return isinstance(v, bool)
    if t == "str":
        return isinstance(v, str)
    if t == "list":
        return isinstance(v, list)
    return True


def _ptype(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return "any"


def _model_key(m: ModelSpec | None) -> Any:
    if m is None:
        return None
    return {"kind": m.kind, "model": m.model_id, "sampling": m.sampling.key_dict(), "key_options": m.key_options}


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def check(recipe: ast.Recipe, params: dict[str, str] | None = None, base_dir: Path | None = None,
          allow_outside: bool = False) -> Program:
    """Check a parsed recipe and resolve it into a :class:`Program`.

    Args:
        recipe: the parsed recipe.
        params: ``--param`` overrides as strings, converted to each param's type.
        base_dir: folder that relative paths resolve against (default: the recipe's folder).
        allow_outside: let paths leave the project directory (:func:`project_root`).

    Raises:
        Diagnostics: every semantic error, sorted by position.
        ConfigError: a ``--param`` that names no param or has the wrong type.
    """
    base = base_dir or Path(recipe.path).resolve().parent
    return _Checker(recipe, params or {}, base, allow_outside).run()
