"""Training shapes of an export: the options a recipe or ``synth export`` gives, checked, and the rows they make.

An export has a *format*. ``jsonl``, ``hf`` and ``parquet`` write the step's rows as they are
(one column per field). The training formats reshape each row into what TRL's trainers take
(https://huggingface.co/docs/trl/dataset_formats):

=============  ==========================================================  =========================
format         columns                                                     TRL trainer
=============  ==========================================================  =========================
``chat``       ``messages``: list of ``{role, content}``                   SFTTrainer (conversational)
``sharegpt``   ``conversations``: list of ``{from, value}`` (human/gpt)    ShareGPT loaders (axolotl)
``alpaca``     ``instruction``, ``input``, ``output``                      Alpaca (Taori et al., 2023)
``preference`` ``prompt``, ``chosen``, ``rejected``                        DPOTrainer (standard)
``kto``        ``prompt``, ``completion``, ``label`` (bool)                KTOTrainer (unpaired)
``views``      ``view``, ``messages``: several examples per row            SFTTrainer; RevThink (2024)
=============  ==========================================================  =========================

Where a value comes from is a *part*: a field of the row, literal text, or a template rendered with
the row (templates: the recipe's ``template`` declarations). Options are stored as plain JSON-able
dicts so that a plan stays plain data. In a recipe::

    export verified to "out/sft" as chat (messages=[system("Solve step by step."), user(question), assistant(reasoning)])
    export answered to "out/dpo" as preference (prompt=question, completion=reasoning, rank_by=verified)
    export both to "out/rt" as views (views=[forward(user=question, assistant=reasoning),
                                             backward(user=ask_backward, assistant=backward_question)])

Only :mod:`synthlang.ast` and :mod:`synthlang.errors` are imported here: the checker calls
:func:`check_options`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from typing import Any

from synthlang import ast
from synthlang.errors import ConfigError, Span

PLAIN = ("jsonl", "hf", "parquet")
SHAPES = ("chat", "sharegpt", "alpaca", "preference", "kto", "views")
FORMATS = PLAIN + SHAPES

COMMON_OPTIONS = ("split", "stratify", "seed", "card", "license", "push_to_hub", "private")
SLOTS: dict[str, tuple[str, ...]] = {
    "chat": ("system", "user", "assistant"),
    "sharegpt": ("system", "user", "assistant"),
    "alpaca": ("instruction", "input", "output"),
    "preference": ("prompt", "chosen", "rejected", "completion", "rank_by"),
    "kto": ("prompt", "completion", "label"),
    "views": (),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "chat": ("user", "assistant"), "sharegpt": ("user", "assistant"), "alpaca": ("instruction", "output"),
    "preference": ("prompt",), "kto": ("prompt", "completion", "label"), "views": (),
}
EXTRA: dict[str, tuple[str, ...]] = {
    "jsonl": ("fields", "row_id"), "hf": ("fields", "row_id"), "parquet": ("fields", "row_id"),
    "chat": ("messages",), "sharegpt": ("messages",), "alpaca": (), "preference": (), "kto": (), "views": ("views",),
}
ROLES = ("system", "user", "assistant")
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}

# Guesses for an omitted slot: patterns in order of preference; among the fields matching the first pattern that
# matches any, the LAST one (fields grow along the graph: `rephrased_question` comes after `question`).
_Q = (r"question", r"instruction", r"prompt|query|problem", r"input")
_A = (r"reasoning", r"response", r"completion", r"output", r"solution", r"answer")
_GUESS: dict[str, tuple[str, ...]] = {
    "user": _Q, "instruction": _Q, "prompt": _Q,
    "assistant": _A, "output": _A, "completion": _A,
    "label": (r"^verified$", r"correct", r"^label$", r"consistent"),
    "rank_by": (r"^verified$", r"score", r"correct"),
}


def options_for(fmt: str) -> tuple[str, ...]:
    """Every option name the format takes."""
    return EXTRA.get(fmt, ()) + SLOTS.get(fmt, ()) + COMMON_OPTIONS


def guess_slot(slot: str, fields: Sequence[str]) -> str | None:
    """The field an omitted slot most likely means: the last field whose name matches (``None`` if none)."""
    for pat in _GUESS.get(slot, ()):
        hits = [f for f in fields if re.search(pat, f)]
        if hits:
            return hits[-1]
    return None


def parse_split(text: str) -> dict[str, float]:
    """``"train=0.9,test=0.1"`` -> ``{"train": 0.9, "test": 0.1}``.

    Raises:
        ConfigError: not NAME=FRACTION pairs, a fraction outside (0, 1], a repeated name, or a sum that is not 1.
    """
    out: dict[str, float] = {}
    for item in [p.strip() for p in text.split(",") if p.strip()]:
        name, eq, frac = item.partition("=")
        name = name.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
            raise ConfigError(f"split '{text}': expected NAME=FRACTION pairs, e.g. train=0.9,test=0.1")
        try:
            f = float(frac)
        except ValueError:
            raise ConfigError(f"split '{text}': '{frac.strip()}' is not a number") from None
        if not 0 < f <= 1:
            raise ConfigError(f"split '{text}': the fraction of '{name}' must be in (0, 1], not {f:g}")
        if name in out:
            raise ConfigError(f"split '{text}': '{name}' is given twice")
        out[name] = f
    if not out:
        raise ConfigError("split: give NAME=FRACTION pairs, e.g. train=0.9,test=0.1")
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise ConfigError(f"split '{text}': the fractions add up to {sum(out.values()):g}, not 1")
    return out


# --------------------------------------------------------------------------- check time

Err = Callable[..., None]


class _Checker:
    def __init__(self, fmt: str, fields: dict[str, str], templates: dict[str, str], err: Err,
                 const: Callable[[ast.Expr], Any]) -> None:
        self.fmt, self.fields, self.templates, self.err, self.const = fmt, fields, templates, err, const

    def part(self, e: ast.Expr, what: str) -> dict[str, Any] | None:
        """A field name, a template name or a string: where one value of an example comes from."""
        if isinstance(e, ast.Name):
            if e.id in self.fields:
                return {"field": e.id}
            if e.id in self.templates:
                return {"template": e.id, "text": self.templates[e.id]}
            close = difflib.get_close_matches(e.id, list(self.fields) + list(self.templates), n=1)
            self.err(f"unknown field '{e.id}' in export {what}", e.span,
                     hint=f"did you mean '{close[0]}'?" if close else f"fields: {', '.join(self.fields)}",
                     code="unknown-field", name=e.id, available=sorted(self.fields))
            return None
        v = self.const(e)
        if isinstance(v, str):
            return {"text": v}
        if v is not None:
            self.err(f"export {what} needs a field, a template or a string, not {v!r}", e.span, code="type-mismatch",
                     name=what, expected="field, template or string")
        return None

    def messages(self, e: ast.Expr, what: str) -> list[dict[str, Any]] | None:
        """``[system("..."), user(question), assistant(reasoning)]``, or a field holding a list of ``{role, content}``.

        papersa (issue 15): ``messages=FIELD`` (a dialogue's ``messages``) copies the field's messages, as part
        ``{"role": "*", "field": FIELD}``; such a field may also be an item of the list, after a ``system(...)``.
        """
        if isinstance(e, ast.Name) and e.id in self.fields:
            return [{"role": "*", "field": e.id}]
        if not isinstance(e, ast.ListExpr) or not e.items:
            self.err(f"{what}= needs a list such as [system(\"...\"), user(question), assistant(reasoning)]", e.span,
                     code="type-mismatch", name=what, expected="list of role(value)")
            return None
        out = []
        for item in e.items:
            if isinstance(item, ast.Name) and item.id in self.fields:
                out.append({"role": "*", "field": item.id})
                continue
            if not isinstance(item, ast.Call) or item.func not in ROLES or len(item.args) != 1 or item.args[0].name:
                self.err(f"each message is role(value) with role one of {', '.join(ROLES)}", item.span,
                         code="type-mismatch", name=what, expected="role(value)", valid=list(ROLES))
                continue
            p = self.part(item.args[0].value, f"message {item.func}")
            if p is not None:
                out.append({"role": item.func, **p})
        return out

    def views(self, e: ast.Expr) -> list[dict[str, Any]] | None:
        """``[forward(user=question, assistant=reasoning), backward(user=ask_backward, assistant=backward_question)]``."""
        if not isinstance(e, ast.ListExpr) or not e.items:
            self.err("views= needs a list of NAME(system=..., user=..., assistant=...), one per training example", e.span,
                     code="type-mismatch", name="views", expected="list of NAME(user=..., assistant=...)")
            return None
        out, seen = [], set()
        for item in e.items:
            if not isinstance(item, ast.Call):
                self.err("a view is NAME(system=..., user=..., assistant=...)", item.span, code="type-mismatch",
                         name="views", expected="NAME(user=..., assistant=...)")
                continue
            if item.func in seen:
                self.err(f"view '{item.func}' is defined twice", item.span, code="duplicate-definition", name=item.func)
            seen.add(item.func)
            msgs = []
            for a in item.args:
                if a.name not in ROLES:
                    self.err(f"a view's parts are named {', '.join(ROLES)}" + (f", not '{a.name}'" if a.name else ""),
                             a.span, code="unknown-option", name=a.name or "", operator="views", valid=list(ROLES))
                    continue
                p = self.part(a.value, f"view {item.func}")
                if p is not None:
                    msgs.append({"role": a.name, **p})
            if not any(m["role"] == "user" for m in msgs) or not any(m["role"] == "assistant" for m in msgs):
                self.err(f"view '{item.func}' needs user= and assistant=", item.span, code="missing-option",
                         name=item.func)
            out.append({"name": item.func, "messages": msgs})
        return out


def check_options(fmt: str, args: Sequence[ast.Arg], fields: dict[str, str], templates: dict[str, str], err: Err,
                  const: Callable[[ast.Expr], Any], span: Span) -> dict[str, Any]:
    """Check an ``export``'s options against the exported step's fields; return them as plain data.

    Args:
        fmt: the export's format (one of :data:`FORMATS`; the caller reports an unknown one).
        args: the export's ``(name=value, ...)`` arguments.
        fields: the step's fields, name -> type.
        templates: the recipe's templates, name -> text.
        err: the checker's ``err(message, span, hint=..., code=..., **data)``.
        const: evaluates a constant expression (literals and params), reporting its own errors.
        span: the export declaration (for errors about options that are missing).

    Returns:
        Plain options: ``fields``, ``row_id``, slots as ``{"field"|"text"|"template": ...}``, ``messages``, ``views``,
        ``split`` (name -> fraction), ``stratify``, ``seed``, ``card``, ``license``, ``push_to_hub``, ``private``.
    """
    ck = _Checker(fmt, fields, templates, err, const)
    valid = options_for(fmt)
    opts: dict[str, Any] = {}
    for a in args:
        if a.name is None:
            err("export options are named, e.g. (fields=[question, answer], row_id=false)", a.span,
                code="positional-option", valid=list(valid))
            continue
        if a.name not in valid:
            close = difflib.get_close_matches(a.name, list(valid), n=1)
            other = [f for f in FORMATS if a.name in options_for(f)]
            hint = (f"did you mean '{close[0]}'? " if close else "") + f"options: {', '.join(valid)}"
            if other and not close:
                hint = f"'{a.name}' is an option of format {', '.join(other)}; " + hint
            err(f"unknown export option '{a.name}'", a.span, hint=hint, code="unknown-option", name=a.name,
                operator="export", valid=list(valid))
            continue
        v = a.value
        if a.name == "fields":
            names = [i.id if isinstance(i, ast.Name) else i.value if isinstance(i, ast.Literal) else None
                     for i in v.items] if isinstance(v, ast.ListExpr) else None
            if names is None or not isinstance(v, ast.ListExpr) or not all(isinstance(n, str) for n in names):
                err("fields= needs a list of field names, e.g. fields=[question, answer]", v.span,
                    code="type-mismatch", name="fields", expected="list of field names")
                continue
            for n, item in zip(names, v.items, strict=False):
                if n not in fields:
                    close = difflib.get_close_matches(str(n), list(fields), n=1)
                    err(f"unknown field '{n}' in export fields", item.span,
                        hint=f"did you mean '{close[0]}'?" if close else f"fields: {', '.join(fields)}",
                        code="unknown-field", name=n, available=sorted(fields))
            opts["fields"] = names
        elif a.name in ("row_id", "card", "private"):
            b = const(v)
            if b is not None and not isinstance(b, bool):
                err(f"{a.name}= needs true or false, not {b!r}", v.span, code="type-mismatch", name=a.name, expected="bool")
            opts[a.name] = b
        elif a.name == "seed":
            s = const(v)
            if s is not None and (not isinstance(s, int) or isinstance(s, bool)):
                err(f"seed= needs an integer, not {s!r}", v.span, code="type-mismatch", name="seed", expected="int")
            opts["seed"] = s
        elif a.name in ("license", "push_to_hub"):
            s = const(v)
            if s is not None and not isinstance(s, str):
                err(f"{a.name}= needs a string, not {s!r}", v.span, code="type-mismatch", name=a.name, expected="str")
            elif a.name == "push_to_hub" and isinstance(s, str) and not re.fullmatch(r"[\w.\-]+/[\w.\-]+", s):
                err(f"push_to_hub= needs a repository id ORG/NAME, not {s!r}", v.span, code="bad-value", name=a.name)
            opts[a.name] = s
        elif a.name == "split":
            opts["split"] = _split_option(v, const, err)
        elif a.name == "stratify":
            if not isinstance(v, ast.Name) or v.id not in fields:
                name = v.id if isinstance(v, ast.Name) else None
                close = difflib.get_close_matches(name or "", list(fields), n=1)
                err(f"stratify= needs a field of the step{f', not {name!r}' if name else ''}", v.span,
                    hint=f"did you mean '{close[0]}'?" if close else f"fields: {', '.join(fields)}",
                    code="unknown-field", name=name or "", available=sorted(fields))
                continue
            opts["stratify"] = v.id
        elif a.name in ("messages",):
            opts["messages"] = ck.messages(v, "messages")
        elif a.name == "views":
            opts["views"] = ck.views(v)
        elif a.name == "rank_by":
            if not isinstance(v, ast.Name) or v.id not in fields:
                err("rank_by= needs a bool or number field (e.g. verified, score)", v.span, code="unknown-field",
                    name=getattr(v, "id", ""), available=sorted(fields))
                continue
            if fields[v.id] not in ("bool", "int", "float", "number", "any"):
                err(f"rank_by= needs a bool or number field; '{v.id}' is {fields[v.id]}", v.span, code="type-mismatch",
                    name="rank_by", expected="bool or number", found=fields[v.id])
            opts["rank_by"] = {"field": v.id}
        else:  # a slot
            p = ck.part(v, a.name)
            if p is not None:
                if a.name == "label" and "field" in p and fields.get(p["field"]) not in ("bool", "any"):
                    err(f"label= needs a bool field; '{p['field']}' is {fields.get(p['field'])}", v.span,
                        code="type-mismatch", name="label", expected="bool", found=fields.get(p["field"]))
                opts[a.name] = p
    if "stratify" in opts and "split" not in opts:
        err("stratify= needs split=", span, code="missing-option", name="stratify")
    problem = resolve_slots(fmt, opts, list(fields))
    if problem:
        err(problem, span, code="missing-option", name=fmt,
            hint=f"name it, e.g. ({', '.join(f'{s}=FIELD' for s in REQUIRED.get(fmt, ()))})")
    return opts


def _split_option(v: ast.Expr, const: Callable[[ast.Expr], Any], err: Err) -> dict[str, float] | None:
    """``split="train=0.9,test=0.1"`` or ``split=splits(train=0.9, test=0.1)`` (or an object literal, when the language has one)."""
    pairs: list[tuple[str, ast.Expr]] | None = None
    if isinstance(v, ast.Call) and all(a.name for a in v.args):
        pairs = [(str(a.name), a.value) for a in v.args]
    elif hasattr(v, "items") and not isinstance(v, ast.ListExpr):   # a future {train: 0.9, test: 0.1}
        try:
            pairs = [(getattr(k, "id", getattr(k, "value", k)), val) for k, val in v.items]
        except (TypeError, ValueError):
            pairs = None
    try:
        if pairs is not None:
            text = ",".join(f"{k}={const(val)}" for k, val in pairs)
        else:
            s = const(v)
            if s is None:
                return None
            if not isinstance(s, str):
                raise ConfigError("split= needs \"train=0.9,test=0.1\" or splits(train=0.9, test=0.1)")
            text = s
        return parse_split(text)
    except ConfigError as exc:
        err(str(exc), v.span, code="bad-value", name="split")
        return None


def resolve_slots(fmt: str, opts: dict[str, Any], fields: Sequence[str]) -> str | None:
    """Fill omitted slots from field names (see :func:`guess_slot`), in place; return a problem or ``None``."""
    if fmt in ("chat", "sharegpt") and opts.get("messages") is None:
        for slot in ("user", "assistant"):
            if slot not in opts and (g := guess_slot(slot, fields)):
                opts[slot] = {"field": g, "guessed": True}
    elif fmt == "alpaca" or fmt == "kto":
        for slot in REQUIRED[fmt]:
            if slot not in opts and (g := guess_slot(slot, fields)):
                opts[slot] = {"field": g, "guessed": True}
    elif fmt == "preference":
        if "prompt" not in opts and (g := guess_slot("prompt", fields)):
            opts["prompt"] = {"field": g, "guessed": True}
        if not ("chosen" in opts and "rejected" in opts):
            if "chosen" in opts or "rejected" in opts:
                return "a preference export needs both chosen= and rejected=, or completion= with rank_by="
            for slot in ("completion", "rank_by"):
                if slot not in opts and (g := guess_slot(slot, fields)):
                    opts[slot] = {"field": g, "guessed": True}
            if "completion" not in opts or "rank_by" not in opts:
                return ("a preference export needs chosen= and rejected= fields (e.g. from a pair step), or "
                        "completion= and rank_by= to rank the n samples of each parent")
    elif fmt == "views":
        if not opts.get("views"):
            return "a views export needs views=[NAME(user=..., assistant=...), ...]"
        return None
    if fmt in ("chat", "sharegpt") and opts.get("messages") is not None:
        return None
    missing = [s for s in REQUIRED.get(fmt, ()) if s not in opts]
    if missing:
        return (f"a {fmt} export needs {', '.join(s + '=' for s in missing)}"
                f" (no field name to guess from among: {', '.join(fields) or 'none'})")
    return None


def mapping_summary(fmt: str, opts: dict[str, Any]) -> str:
    """One line saying where each column of a training format comes from (shown in the card and the CLI)."""
    def show(p: dict[str, Any]) -> str:
        if "field" in p:
            return p["field"] + (" (guessed)" if p.get("guessed") else "")
        if "template" in p:
            return f"template {p['template']}"
        t = p.get("text", "")
        return repr(t if len(t) < 40 else t[:37] + "...")

    if fmt in PLAIN:
        return "fields as columns" + (f": {', '.join(opts['fields'])}" if opts.get("fields") else "")
    if fmt == "views":
        return "; ".join(f"{v['name']}: " + ", ".join(f"{m['role']}={show(m)}" for m in v["messages"]) for v in opts["views"])
    if opts.get("messages"):
        return ", ".join(f"{m['role']}={show(m)}" for m in opts["messages"])
    return ", ".join(f"{s}={show(opts[s])}" for s in SLOTS[fmt] if s in opts)
