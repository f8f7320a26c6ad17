"""Checking ``loop`` blocks: arguments, body steps, ``feed`` clauses and placement.

Semantics (see docs/operators.md, "loop"):

* ``loop NAME(rounds=N, until=EXPR, train="cmd") { step ...; feed POOL from STEP }``.
* A body step reads a fed pool explicitly: ``POOL.all`` is the pool before the
  loop plus every row fed so far; ``POOL.new`` is only the rows fed in the round
  before (in round 0: the pool before the loop). A bare ``POOL`` in the body is
  an error (``loop-read``). Steps may also read any other node declared before
  the loop (``seeds``); those they read whole, every round.
* Fed rows must have every pool field, with compatible types (``loop-feed-types``).
* ``round`` (0-based) is visible in the body's templates and expressions;
  ``until`` sees ``round``, ``new_rows`` (rows fed this round) and
  ``pool_rows`` (the pool's size after this round).
* After the loop, POOL names the pool with every fed row, each body step names
  its rows of every round, and NAME names the fed rows of every round.
* Top-level steps declared before the loop run before it; those declared after
  it run after it.

Errors: a body that feeds nothing back, a feed whose pool is not declared
before the loop or whose step is not in the body, fed rows missing a pool
field, nested loops, unknown loop arguments, a step that reads a loop's rows
before the loop runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthlang import ast
from synthlang.plan.keys import digest
from synthlang.plan.program import LoopSpec
from synthlang.plan.train import placeholder_problem

if TYPE_CHECKING:
    from synthlang.check.checker import _Checker

LOOP_ARGS = ("rounds", "until", "train")
READ_MODES = ("all", "new")  # pool.all: every row so far; pool.new: the rows fed last round (round 0: the pool)


def register_pool_reads(ck: _Checker, pools: set[str]) -> list[str]:
    """Make ``POOL.all`` and ``POOL.new`` readable in a loop body; returns the names added."""
    added = []
    for p in sorted(pools):
        for mode in READ_MODES:
            name = f"{p}.{mode}"
            ck.fields[name] = ck.fields[p]
            ck.fps[name] = digest([ck.fps.get(p, p), mode])
            added.append(name)
    return added


def _explicit_reads(ck: _Checker, d: ast.Step, loop: ast.Loop, pools: set[str]) -> bool:
    """Inside a loop body every read of a fed pool says .all or .new; report a bare one (False)."""
    from synthlang.ops import OPERATORS
    from synthlang.ops.base import KIND_NODE

    op = OPERATORS.get(d.op.func)
    ok = True
    for i, a in enumerate(d.op.args):
        is_read = (i == 0 and a.name is None) or (op is not None and a.name in op.options
                                                   and op.options[a.name].kind == KIND_NODE)
        if not is_read or not isinstance(a.value, ast.Name) or a.value.id not in pools:
            continue
        name = a.value.id
        ck.err(f"step '{d.name}' reads pool '{name}' inside loop '{loop.name}': say which rows", a.value.span,
               hint=f"write {name}.all (the pool before the loop and every row fed since) "
                    f"or {name}.new (only the rows fed in the last round; in round 0 the pool before the loop)",
               code="loop-read", name=name, loop=loop.name)
        ok = False
    return ok


def _feed_compatible(pool_t: str, fed_t: str) -> bool:
    if "any" in (pool_t, fed_t) or "json" in (pool_t, fed_t) or "null" == fed_t or pool_t == fed_t:
        return True
    num = {"int", "float", "number"}
    if pool_t in num and fed_t in num:
        return True
    return pool_t.startswith("list") and fed_t.startswith("list") and (pool_t == "list" or fed_t == "list")
UNTIL_VARS = {"round": "int", "new_rows": "int", "pool_rows": "int"}


def loop_node_names(loop: ast.Loop) -> set[str]:
    """Names a loop defines for the rest of the recipe: its own name and its body steps."""
    return {loop.name} | {d.name for d in loop.body if isinstance(d, ast.Step)}


def order_with_loops(ck: _Checker, order: list[str], decls: tuple[ast.Decl, ...]) -> list[str | ast.Loop]:
    """Interleave top-level steps and loops: steps declared before a loop run before it.

    Reports a step that reads a step declared after a later loop, or reads a
    loop's rows while declared before that loop.
    """
    loops = [d for d in decls if isinstance(d, ast.Loop)]
    if not loops:
        return list(order)
    segment: dict[str, int] = {}
    seg = 0
    for d in decls:
        if isinstance(d, ast.Loop):
            seg += 1
        elif isinstance(d, ast.Step):
            segment[d.name] = seg
    owner: dict[str, int] = {}
    for i, lp in enumerate(loops):
        for n in loop_node_names(lp):
            owner[n] = i
    for name in order:
        d = ck.step_decls[name]
        inp, span = ck._input_name(d)
        if inp is None:
            continue
        if inp in owner and segment[name] <= owner[inp]:
            ck.err(f"step '{name}' reads '{inp}' from loop '{loops[owner[inp]].name}', but is declared before the loop",
                   span, hint="move the step below the loop", code="loop-order", name=inp)
        elif inp in segment and segment[inp] > segment[name]:
            ck.err(f"step '{name}' reads '{inp}', which is declared after loop '{loops[segment[name]].name}'",
                   span, hint="declare it before the loop", code="loop-order", name=inp)
    out: list[str | ast.Loop] = []
    for s in range(len(loops) + 1):
        out.extend(n for n in order if segment[n] == s)
        if s < len(loops):
            out.append(loops[s])
    return out


def check_loop(ck: _Checker, loop: ast.Loop, position: int) -> LoopSpec | None:
    """Check one loop against the names and fields known at its place; register its nodes.

    Args:
        ck: the checker (its fields, steps and fingerprints are updated).
        loop: the loop's AST.
        position: index of the top-level step the loop runs before.

    Returns:
        The resolved loop, or ``None`` when it has errors (they are in ``ck.errors``).
    """
    n_err = len(ck.errors)
    kw = {a.name: a for a in loop.args if a.name}
    for a in loop.args:
        if a.name is None:
            ck.err("loop arguments are named: rounds=, until=, train=", a.span, code="positional-option")
        elif a.name not in LOOP_ARGS:
            ck.err(f"unknown loop argument '{a.name}'", a.span, hint="use rounds=, until= or train=",
                   code="unknown-option", name=a.name, valid=list(LOOP_ARGS))
    rounds: Any = 1
    if "rounds" in kw:
        rounds = ck._const(kw["rounds"].value, "int")
        if isinstance(rounds, int) and rounds < 1:
            ck.err("rounds must be at least 1", kw["rounds"].span, code="bad-option")
    elif "until" not in kw:
        ck.err(f"loop '{loop.name}' needs rounds= or until=", loop.span, hint="e.g. loop grow(rounds=3) { ... }",
               code="missing-argument")
    else:
        rounds = 10
    until = kw["until"].value if "until" in kw else None
    if until is not None:
        saved = dict(ck.params)
        ck.params.pop("round", None)
        ck._check_expr(until, dict(UNTIL_VARS))
        ck.params.clear()
        ck.params.update(saved)
    train = ck._const(kw["train"].value, "str") if "train" in kw else None
    if isinstance(train, str) and placeholder_problem(train) is not None:   # plan/train.py
        ck.err(f"train= command: {placeholder_problem(train)}", kw["train"].value.span, code="bad-train-command")

    body_steps = [d for d in loop.body if isinstance(d, ast.Step)]
    feeds = [d for d in loop.body if isinstance(d, ast.Feed)]
    for d in loop.body:
        if isinstance(d, ast.Loop):
            ck.err("nested loops are not supported", d.span, hint="write the inner loop as its own loop after this one",
                   code="unsupported")
    names = {d.name for d in body_steps}
    for d in body_steps:
        if d.name in ck.fields or d.name in ck.step_decls or d.name == loop.name:
            ck.err(f"'{d.name}' is already defined", d.span, hint="rename the step", code="duplicate-definition", name=d.name)
    if not feeds:
        ck.err(f"loop '{loop.name}' never feeds anything back", loop.span,
               hint="add 'feed POOL from STEP' so new rows reach the next round", code="loop-no-feed", loop=loop.name)

    # body steps in dependency order (inputs and node options: body steps or nodes known before the loop)
    order: list[ast.Step] = []
    placed: set[str] = set()
    by_name = {d.name: d for d in body_steps}

    def place(d: ast.Step, seen: set[str]) -> None:
        if d.name in placed or d.name in seen:
            return
        seen.add(d.name)
        inp, _ = ck._input_name(d)
        for dep in [inp, *(a.value.id for a in d.op.args[1:] if a.name and isinstance(a.value, ast.Name))]:
            if dep in by_name:
                place(by_name[dep], seen)
        placed.add(d.name)
        order.append(d)

    for d in body_steps:
        place(d, set())
    pools = {f.pool for f in feeds if f.pool in ck.fields and f.pool not in names and f.pool not in ck.loop_nodes}
    views = register_pool_reads(ck, pools)
    ck.params["round"] = 0
    try:
        for d in order:
            inp, span = ck._input_name(d)
            if inp is None:
                ck.err(f"step '{d.name}' needs an input", span, code="missing-input")
                continue
            if not _explicit_reads(ck, d, loop, pools):
                continue
            if inp not in names and inp not in ck.fields:
                base, _, mode = inp.rpartition(".")
                if mode in READ_MODES and base in ck.fields:
                    ck.err(f"'{inp}': only a pool that loop '{loop.name}' feeds has .all and .new; '{base}' is read whole",
                           span, hint=f"write {base}" + (f", or feed {base} from a step of this loop" if base not in names else ""),
                           code="loop-read", name=inp)
                else:
                    ck.err(f"unknown source or step '{inp}'", span, code="unknown-name", name=inp, kind="input")
                continue
            ck.step_decls[d.name] = d
            ck._step(d)
    finally:
        ck.params.pop("round", None)
        for v in views:  # pool.all / pool.new exist only inside the body
            ck.fields.pop(v, None)

    pairs: list[tuple[str, str]] = []
    for f in feeds:
        if f.pool in names or f.pool not in ck.fields or f.pool in ck.loop_nodes:
            ck.err(f"feed target '{f.pool}' must be a source or step declared before the loop", f.span,
                   code="loop-feed", name=f.pool)
            continue
        if f.step not in names:
            ck.err(f"feed source '{f.step}' is not a step of loop '{loop.name}'", f.span,
                   hint=f"steps of the loop: {', '.join(sorted(names))}", code="loop-feed", name=f.step)
            continue
        if f.step not in ck.fields:
            continue
        missing = sorted(set(ck.fields[f.pool]) - set(ck.fields[f.step]))
        if missing:
            ck.err(f"rows of '{f.step}' lack field(s) {', '.join(missing)} of pool '{f.pool}'", f.span,
                   hint="fed rows must have every field of the pool", code="loop-feed-fields", missing=missing)
            continue
        clash = [(k, t, ck.fields[f.step][k]) for k, t in ck.fields[f.pool].items()
                 if not _feed_compatible(t, ck.fields[f.step][k])]
        if clash:
            k, want, got = clash[0]
            ck.err(f"'{f.step}' would feed {k}: {got} into pool '{f.pool}', whose {k} is {want}", f.span,
                   hint=f"convert it in the loop first, e.g. step typed = derive({f.step}, {k} = ...)",
                   code="loop-feed-types", name=k, expected=want, found=got,
                   fields=[{"field": a, "pool": b, "fed": c} for a, b, c in clash])
            continue
        pairs.append((f.pool, f.step))
    ck.loop_nodes |= loop_node_names(loop)
    if len(ck.errors) > n_err:
        return None
    fp = digest({"loop": loop.name, "rounds": rounds, "until": repr(until), "train": train,
                 "steps": [ck.fps[d.name] for d in order], "feeds": pairs})
    for pool, _ in pairs:
        ck.fps[pool] = digest([ck.fps[pool], fp])
    ck.fields[loop.name] = dict(ck.fields[pairs[0][0]])
    ck.fps[loop.name] = fp
    return LoopSpec(loop.name, int(rounds), until, train, [ck.steps[d.name] for d in order], pairs, position, fp, loop.span)
