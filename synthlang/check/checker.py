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
from synthlang.engines import ENGINE_KINDS
from synthlang.engines.base import SAMPLING_KEYS, SamplingParams
from synthlang.errors import CheckError, ConfigError, Diagnostics, SourceError, Span
from synthlang.expr import FUNCTIONS, evaluate, free_names, infer_type
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
)
from synthlang.plan.keys import digest
from synthlang.plan.program import ExportSpec, ModelSpec, Program, SourceSpec, StepSpec
from synthlang.templates import TemplateError, variables

TYPES = ("str", "int", "float", "bool", "json", "list", "any", "number")
SOURCE_LOADERS = ("jsonl", "csv")
EXPORT_FORMATS = ("jsonl", "hf", "parquet")
MODEL_KEY_OPTIONS = ("revision",)


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


class _Checker:
    def __init__(self, recipe: ast.Recipe, param_overrides: dict[str, str], base_dir: Path) -> None:
        self.recipe = recipe
        self.path = recipe.path
        self.overrides = dict(param_overrides)
        self.base_dir = base_dir
        self.errors: list[SourceError] = []
        self.params: dict[str, Any] = {}
        self.param_types: dict[str, str] = {}
        self.models: dict[str, ModelSpec] = {}
        self.templates: dict[str, str] = {}
        self.template_spans: dict[str, Span] = {}
        self.sources: dict[str, SourceSpec] = {}
        self.steps: dict[str, StepSpec] = {}
        self.step_decls: dict[str, ast.Step] = {}
        self.fields: dict[str, dict[str, str]] = {}
        self.fps: dict[str, str] = {}
        self.loop_nodes: set[str] = set()   # names defined by loops (check/loops.py)

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
            if name not in self.param_types:
                raise ConfigError(f"--param {name}: the recipe has no param '{name}'"
                                  + (f"; {did_you_mean(name, self.param_types)}" if did_you_mean(name, self.param_types) else ""))
        for d in decls:
            if isinstance(d, ast.Model):
                self._model(d)
        if not self.models:
            self.models["default"] = ModelSpec("default", "embedded", "", SamplingParams())
        for d in decls:
            if isinstance(d, ast.Template):
                self._template(d)
        for d in decls:
            if isinstance(d, ast.Source):
                self._source(d)
        for d in decls:
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
        if self.errors:
            raise Diagnostics(self.errors)
        steps = [self.steps[n] for n in order]
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
        for c in _calls(e):
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
                raise ConfigError(f"--param {d.name}={raw}: expected a value of type {t}") from None
            return
        if d.default is None:
            raise ConfigError(f"param '{d.name}' has no default: pass --param {d.name}=VALUE")
        v = self._const(d.default, t)
        if t == "float" and isinstance(v, int):
            v = float(v)
        self.params[d.name] = v

    def _model(self, d: ast.Model) -> None:
        call = d.engine
        if call.func not in ENGINE_KINDS:
            self.err(f"unknown engine '{call.func}'", call.span,
                     hint=did_you_mean(call.func, list(ENGINE_KINDS)) or f"engines: {', '.join(ENGINE_KINDS)}",
                     code="unknown-engine", name=call.func, valid=list(ENGINE_KINDS))
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
            v = self._const(arg.value)
            if name in SAMPLING_KEYS:
                if name == "stop":
                    v = tuple(v) if isinstance(v, list) else (v,)
                sampling[name] = v
            elif name in MODEL_KEY_OPTIONS:
                key_opts[name] = v
            else:
                opts[name] = v
        try:
            sp = SamplingParams(**sampling)
        except TypeError as exc:
            self.err(f"bad sampling params: {exc}", call.span, code="bad-option")
            sp = SamplingParams()
        self.models[d.name] = ModelSpec(d.name, call.func, model_id, sp, opts, key_opts, d.span)

    def _resolve_path(self, rel: str, span: Span, what: str) -> Path | None:
        p = (self.base_dir / rel).resolve()
        if not p.exists():
            self.err(f"{what} file not found: {rel}", span, hint=f"paths are relative to the recipe's folder ({self.base_dir})",
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
            self.err(str(exc), d.span, code="template-syntax")
            return
        self.templates[d.name] = text
        self.template_spans[d.name] = d.span

    def _source(self, d: ast.Source) -> None:
        call = d.loader
        if call.func not in SOURCE_LOADERS:
            self.err(f"unknown source loader '{call.func}'", call.span,
                     hint=did_you_mean(call.func, list(SOURCE_LOADERS)) or f"loaders: {', '.join(SOURCE_LOADERS)}",
                     code="unknown-loader", name=call.func, valid=list(SOURCE_LOADERS))
            return
        pos = call.positional
        if not pos:
            self.err(f"source '{d.name}' needs a file path", call.span, code="missing-argument")
            return
        rel = self._const(pos[0], "str")
        path = self._resolve_path(rel, pos[0].span, "source") if isinstance(rel, str) else None
        args: dict[str, Any] = {}
        for name, arg in call.kw().items():
            if name not in ("limit", "offset"):
                self.err(f"unknown option '{name}' for {call.func}()", arg.span, hint="options: limit, offset",
                         code="unknown-option", name=name, valid=["limit", "offset"])
                continue
            args[name] = self._const(arg.value, "int")
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

    def _check_expr(self, e: ast.Expr, env: dict[str, str]) -> str:
        for n in free_names(e):
            if n.id not in env and n.id not in self.params:
                self.err(f"unknown field '{n.id}'", n.span, hint=did_you_mean(n.id, list(env) + list(self.params)),
                         code="unknown-field", name=n.id, available=sorted(env))
        for c in _calls(e):
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
        if isinstance(first, ast.Name):
            return first.id, first.span
        return None, first.span

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
                self.err(f"unknown source or step '{inp}'", span, hint=did_you_mean(inp, known),
                         code="unknown-name", name=inp, kind="input")
                deps[name] = None
                continue
            deps[name] = inp if inp in self.step_decls else None
        order: list[str] = []
        state: dict[str, int] = {}
        for start in self.step_decls:
            path: list[str] = []
            node: str | None = start
            while node is not None and state.get(node, 0) == 0:
                state[node] = 1
                path.append(node)
                node = deps.get(node)
            if node is not None and state.get(node) == 1:
                cyc = path[path.index(node):] + [node]
                self.err(f"dependency cycle: {' -> '.join(cyc)}", self.step_decls[node].span,
                         hint="a step cannot read its own output; use a loop for rounds", code="dependency-cycle", cycle=cyc)
            for n in reversed(path):
                state[n] = 2
            order.extend(reversed([n for n in path if n not in order]))
        # parents before children: walk each chain from the root
        ordered: list[str] = []
        placed: set[str] = set()

        def place(n: str, seen: set[str]) -> None:
            if n in placed or n in seen:
                return
            seen.add(n)
            p = deps.get(n)
            if p is not None:
                place(p, seen)
            placed.add(n)
            ordered.append(n)

        for n in self.step_decls:
            place(n, set())
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
        fields_in = dict(self.fields[inp])
        opts: dict[str, Any] = {}
        for a in d.op.args[1:]:
            if a.name is None:
                self.err(f"{op.name}() takes one positional argument (its input); name the others",
                         a.span, hint=f"options: {', '.join(op.options)}", code="positional-option")
        kw = d.op.kw()
        model: ModelSpec | None = None
        for name, arg in kw.items():
            spec = op.options.get(name)
            if spec is None:
                self.err(f"unknown option '{name}' for operator '{op.name}'", arg.span,
                         hint=(did_you_mean(name, list(op.options)) or "") + f" valid options: {', '.join(op.options)}",
                         code="unknown-option", name=name, operator=op.name, valid=list(op.options))
                continue
            opts[name] = self._option(spec, arg, fields_in)
        for name, spec in op.options.items():
            if name not in opts:
                opts[name] = spec.default
        if op.select is not None:
            op = op.select(opts)
            for name, spec in op.options.items():
                if name not in opts:
                    opts[name] = spec.default
        if op.uses_model:
            mname = opts.get("model")
            if mname is None:
                mname = next(iter(self.models))
                opts["model"] = mname
            model = self.models.get(mname)
            if opts.get("prompt") is None:
                opts["prompt"] = op.default_prompt_text()
            # template variables must exist at this point of the graph
            avail = set(fields_in) | {"input"} | set(self.params) | set(op.template_vars)
            for key in ("prompt", "system"):
                text = opts.get(key)
                if text is None:
                    continue
                try:
                    vs = variables(text)
                except TemplateError as exc:
                    self.err(str(exc), kw[key].span if key in kw else d.span, code="template-syntax")
                    continue
                missing = sorted(vs - avail)
                for v in missing:
                    where = kw[key].span if key in kw else d.span
                    self.err(f"template variable '{v}' is not a field at step '{d.name}'", where,
                             hint=did_you_mean(v, avail) or f"available: {', '.join(sorted(avail))}",
                             code="template-variable", name=v, step=d.name, available=sorted(avail))
        # outputs
        rename: dict[str, str] = {o.name: o.name for o in op.outputs}
        out_types = {o.name: o.type for o in op.outputs}
        explicit: dict[str, ast.Output] = {}
        if d.outputs:
            if len(d.outputs) > len(op.outputs):
                self.err(f"operator '{op.name}' has {len(op.outputs)} output(s) "
                         f"({', '.join(o.name for o in op.outputs)}), but {len(d.outputs)} are named",
                         d.outputs[len(op.outputs)].span, code="too-many-outputs", operator=op.name)
            for spec_out, o in zip(op.outputs, d.outputs, strict=False):
                rename[spec_out.name] = o.name
                explicit[o.name] = o
        fields_out = dict(fields_in) if op.inherit else {}
        for orig, new in rename.items():
            o = explicit.get(new)
            if new in fields_out and not (o is not None and o.replace):
                span = o.span if o is not None else d.span
                self.err(f"step '{d.name}' output '{new}' would overwrite the existing field '{new}'", span,
                         hint=f"rename it (-> {orig}_new) or write '-> replace {new}' to overwrite on purpose",
                         code="shadowed-field", name=new, step=d.name)
            fields_out[new] = (str(o.type) if o is not None and o.type is not None else out_types[orig])
        fp = digest({
            "op": op.name, "input": self.fps.get(inp, inp),
            "opts": {k: (v if not isinstance(v, ast.Expr.__args__) else repr(v)) for k, v in opts.items() if k != "model"},  # type: ignore[attr-defined]
            "model": _model_key(model), "rename": rename,
        })
        self.steps[d.name] = StepSpec(d.name, op, inp, opts, rename, fields_in, fields_out, fp, model, d.span)
        self.fields[d.name] = fields_out
        self.fps[d.name] = fp

    def _option(self, spec: Any, arg: ast.Arg, fields: dict[str, str]) -> Any:
        v = arg.value
        kind = spec.kind
        if kind == KIND_MODEL:
            if isinstance(v, ast.Name) and v.id in self.models:
                return v.id
            name = v.id if isinstance(v, ast.Name) else None
            self.err(f"unknown model '{name or v}'", v.span,
                     hint=did_you_mean(name or "", list(self.models)) or f"declared models: {', '.join(self.models)}",
                     code="unknown-name", name=name, kind="model")
            return None
        if kind == KIND_TEMPLATE:
            if isinstance(v, ast.Name):
                if v.id in self.templates:
                    return self.templates[v.id]
                self.err(f"unknown template '{v.id}'", v.span, hint=did_you_mean(v.id, list(self.templates)),
                         code="unknown-name", name=v.id, kind="template")
                return None
            if isinstance(v, ast.Literal) and isinstance(v.value, str):
                try:
                    variables(v.value)
                except TemplateError as exc:
                    self.err(str(exc), v.span, code="template-syntax")
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
            name = v.id if isinstance(v, ast.Name) else None
            self.err(f"option '{spec.name}' needs the name of a source or step declared before it", v.span,
                     hint=did_you_mean(name or "", list(self.fields)), code="unknown-name", name=name, kind="node")
            return None
        if kind == KIND_EXPR:
            self._check_expr(v, fields)
            return v
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
        return val

    def _export(self, d: ast.Export) -> ExportSpec | None:
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
        return ExportSpec(d.step.id, (self.base_dir / d.path), d.format, opts, d.span)


def _calls(e: ast.Expr) -> list[ast.Call]:
    out: list[ast.Call] = []

    def walk(x: Any) -> None:
        if isinstance(x, ast.Call):
            out.append(x)
            for a in x.args:
                walk(a.value)
        elif isinstance(x, ast.Binary):
            walk(x.left)
            walk(x.right)
        elif isinstance(x, ast.Unary):
            walk(x.operand)
        elif isinstance(x, ast.ListExpr):
            for i in x.items:
                walk(i)
        elif isinstance(x, (ast.Index,)):
            walk(x.obj)
            walk(x.key)
        elif isinstance(x, ast.Attr):
            walk(x.obj)

    walk(e)
    return out


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


def check(recipe: ast.Recipe, params: dict[str, str] | None = None, base_dir: Path | None = None) -> Program:
    """Check a parsed recipe and resolve it into a :class:`Program`.

    Args:
        recipe: the parsed recipe.
        params: ``--param`` overrides as strings, converted to each param's type.
        base_dir: folder that relative paths resolve against (default: the recipe's folder).

    Raises:
        Diagnostics: every semantic error, sorted by position.
        ConfigError: a ``--param`` that names no param or has the wrong type.
    """
    base = base_dir or Path(recipe.path).resolve().parent
    return _Checker(recipe, params or {}, base).run()
