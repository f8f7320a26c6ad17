"""Tutoring dialogues between two models: ``dialogue`` (a compound step) and ``dialogue_turn`` (one turn).

``step talks = dialogue(seeds, tutor=teacher, student=student, max_turns=4, stop=EXPR)`` makes one row per
dialogue: the student opens (it role-plays a learner with a misconception and shows its attempt), then the
tutor and the student take turns until ``stop`` is true after a turn or the tutor has spoken ``max_turns``
times. The row holds ``messages`` (the dialogue as TRL chat messages from the tutor's side: the student's
turns are ``user``, the tutor's ``assistant``), ``last_message``, ``last_role``, ``turns``, ``dialogue_done``
and ``dialogue_stop`` (``stop``: the stop expression ended it; ``max_turns``: it ran out of turns).

How it runs: the checker expands the step into ordinary steps (:func:`expand`), so every turn is one call
recorded in the store with its own row, and each row's lineage parent is the row of the turn before::

    talks__open   = derive(seeds, messages = [], last_message = "", ...)   # empty dialogue state
    talks__s0     = dialogue_turn(talks__open, role="student", model=student, ...)   # the opening attempt
    talks__t1     = dialogue_turn(talks__s0, role="tutor", model=teacher, ...)
    talks__s1     = dialogue_turn(talks__t1, role="student", model=student, ...)
    ...                                                                   # up to talks__s{max_turns}
    talks__end_*  = filter(TURN, where=dialogue_done)                     # dialogues that stopped there
    talks         = union(...)                                            # one row per dialogue

A dialogue that stopped makes no more calls: ``dialogue_turn``'s ``prepare`` gives it zero samples. The
stop expression sees the row's fields plus ``last_message``, ``last_role`` (``tutor``/``student``) and
``turns`` (messages so far). Prompts see the row's fields plus ``transcript`` ("Student: ...\\nTeacher: ...")
and ``turn``.

Sources: MathDial (Macina et al., 2023): an LLM student with a sampled misconception and its incorrect
solution, a teacher who scaffolds, the conversation ending when the student solves the problem or the
teacher reveals the answer; TreeInstruct (Kargupta et al., 2024) and Pedagogical Alignment (Sonkar et al.,
2024): the tutor must not give the answer away.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from synthlang import ast
from synthlang.expr import ExprError, evaluate
from synthlang.ops.base import (
    KIND_BOOL,
    KIND_CHOICE,
    KIND_EXPR,
    KIND_FLOAT,
    KIND_INT,
    KIND_MODEL,
    KIND_TEMPLATE,
    LOCALITY_ROW,
    MAX_SAMPLES,
    SAMPLING_OPTIONS,
    Operator,
    Option,
    OutputField,
    RowContext,
    RowFailure,
    options,
)

STATE = ("messages", "last_message", "last_role", "turns", "dialogue_done", "dialogue_stop")
_SPEAKER = {"tutor": "Teacher", "student": "Student"}
_OTHER_LINE = re.compile(r"^\s*(?:\*\*)?(?:teacher|tutor|student|assistant|user)(?:\*\*)?\s*:", re.IGNORECASE | re.MULTILINE)
_OWN_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:teacher|tutor|student)(?:\*\*)?\s*:\s*", re.IGNORECASE)


def transcript(messages: Any) -> str:
    """The dialogue so far as ``Student: ...`` / ``Teacher: ...`` lines (empty before the first turn)."""
    if not isinstance(messages, list):
        return ""
    lines = []
    for m in messages:
        if isinstance(m, dict):
            who = "Teacher" if m.get("role") == "assistant" else "Student"
            lines.append(f"{who}: {m.get('content', '')}")
    return "\n".join(lines)


def clean_turn(text: str) -> str:
    """One speaker's turn: a leading ``Teacher:``/``Student:`` label dropped, cut where the model starts the other side."""
    s = _OWN_PREFIX.sub("", text.strip(), count=1)
    m = _OTHER_LINE.search(s)
    if m is not None and m.start() > 0:
        s = s[: m.start()]
    return s.strip()


def _turn_vars(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    msgs = row.get("messages")
    return {"transcript": transcript(msgs), "turn": len(msgs) if isinstance(msgs, list) else 0}


def _turn_prepare(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> list[dict[str, Any]]:
    """A dialogue that already stopped gets no sample (no call, no row)."""
    return [{"__n__": 0} if r.get("dialogue_done") is True else {} for r in rows]


def _turn_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    role = opts.get("role") or "tutor"
    said = clean_turn(text)
    if not said:
        raise RowFailure(f"empty {role} turn")
    prev = row.get("messages") if isinstance(row.get("messages"), list) else []
    msgs = [*prev, {"role": "assistant" if role == "tutor" else "user", "content": said}]
    view = {**row, "messages": msgs, "last_message": said, "last_role": role, "turns": len(msgs)}
    done = False
    if opts.get("stop") is not None:
        try:
            done = evaluate(opts["stop"], view) is True
        except ExprError as exc:
            raise RowFailure(f"stop expression failed: {exc}") from None
    reason = "stop" if done else ("max_turns" if opts.get("last") else "")
    return {"messages": msgs, "last_message": said, "last_role": role, "turns": len(msgs), "dialogue_done": done,
            "dialogue_stop": reason}


TURN_OUTPUTS = (
    OutputField("messages", "json", "the dialogue so far: TRL chat messages (student = user, tutor = assistant)"),
    OutputField("last_message", "str", "the turn just spoken"),
    OutputField("last_role", "str", "tutor or student"),
    OutputField("turns", "int", "messages so far"),
    OutputField("dialogue_done", "bool", "whether the stop expression is true after this turn"),
    OutputField("dialogue_stop", "str", "stop (the stop expression), max_turns (the last turn), or empty"),
)

DIALOGUE_TURN = Operator(
    name="dialogue_turn",
    doc="One turn of a tutoring dialogue (made by `dialogue`; rarely written by hand): the role's model answers "
        "the transcript so far; the turn is appended to `messages` and the stop expression decides whether the "
        "dialogue ends. A dialogue that already ended gets no call.",
    source="MathDial (2023); TreeInstruct (2024); Pedagogical Alignment (2024)",
    options=options(
        Option("role", KIND_CHOICE, "tutor", choices=("tutor", "student"), doc="who speaks this turn"),
        Option("model", KIND_MODEL, doc="the speaker's model"),
        Option("prompt", KIND_TEMPLATE, doc="the speaker's prompt (sees the row, transcript and turn)"),
        Option("system", KIND_TEMPLATE, doc="an optional system prompt"),
        Option("stop", KIND_EXPR, None, doc="ends the dialogue when true after this turn (sees last_message, last_role, turns)"),
        Option("last", KIND_BOOL, False, doc="the last turn allowed: a dialogue still going is marked max_turns", post=True),
        Option("n", KIND_INT, 1, doc="candidate turns per dialogue (n > 1: alternatives, e.g. tutor moves to judge)", range=(1, MAX_SAMPLES)),
        Option("on_truncation", KIND_CHOICE, "keep", choices=("fail", "keep"), post=True,
               doc="a turn cut at max_tokens: keep it (default) or fail the dialogue"),
        *SAMPLING_OPTIONS,
    ),
    outputs=TURN_OUTPUTS,
    uses_model=True,
    default_prompt="dialogue_tutor.j2",
    postprocess=_turn_post,
    prompt_vars=_turn_vars,
    prepare=_turn_prepare,
    template_vars=("transcript", "turn"),
    locality_=LOCALITY_ROW,
    extra={"state_outputs": STATE},   # its outputs update the dialogue state fields in place
)

# The compound step: its options (the checker expands it before checking; see expand()).
DIALOGUE = Operator(
    name="dialogue",
    doc="A tutoring dialogue per row between two models: the student opens with its attempt, then tutor and student "
        "alternate until `stop` is true after a turn or the tutor has spoken `max_turns` times. One row per dialogue "
        "with `messages` (chat, tutor = assistant); every turn is a recorded call with its own lineage row "
        "(the step expands into dialogue_turn / filter / union steps named STEP__...).",
    source="MathDial (Macina et al., 2023); TreeInstruct (Kargupta et al., 2024); Pedagogical Alignment (Sonkar et al., 2024)",
    options=options(
        Option("tutor", KIND_MODEL, doc="the tutor's (teacher's) model (required)"),
        Option("student", KIND_MODEL, doc="the student's model, role-playing a learner (required)"),
        Option("max_turns", KIND_INT, 5, doc="most tutor turns per dialogue", range=(1, 20)),
        Option("stop", KIND_EXPR, None, doc="ends a dialogue when true after a turn; sees the row, last_message, "
                                            "last_role (tutor/student) and turns"),
        Option("opening_prompt", KIND_TEMPLATE, doc="the student's first turn (default: dialogue_opening.j2: its attempt)"),
        Option("student_prompt", KIND_TEMPLATE, doc="the student's later turns (default: dialogue_student.j2)"),
        Option("tutor_prompt", KIND_TEMPLATE, doc="the tutor's turns (default: dialogue_tutor.j2: scaffold, never reveal)"),
        Option("student_system", KIND_TEMPLATE, doc="the student's system prompt (e.g. its misconception)"),
        Option("tutor_system", KIND_TEMPLATE, doc="the tutor's system prompt"),
        Option("max_tokens", KIND_INT, None, doc="per turn (tokens)", range=(1, None)),
        Option("temperature", KIND_FLOAT, None, doc="per turn", range=(0.0, 2.0)),
    ),
    outputs=TURN_OUTPUTS,
    uses_model=False,
    extra={"compound": True},
    locality_=LOCALITY_ROW,
)

DIALOGUE_OPS = (DIALOGUE, DIALOGUE_TURN)


# ----------------------------------------------------------------- expansion (called by the checker)
def _arg(name: str | None, value: ast.Expr, span: Any) -> ast.Arg:
    return ast.Arg(name, value, span)


def expand(decls: Sequence[Any], const: Any, err: Any) -> list[Any]:
    """Replace each ``dialogue`` step (also inside loop bodies) by its turn / filter / union steps.

    Args:
        decls: the recipe's declarations.
        const: ``expr -> value`` for ``max_turns`` (literals and params).
        err: the checker's ``err(message, span, hint=..., code=..., **data)``.

    Returns:
        The declarations with every ``dialogue`` step expanded; the last expanded step keeps the step's name.
    """
    out: list[Any] = []
    taken = _names(decls)
    for d in decls:
        if isinstance(d, ast.Loop):
            out.append(replace(d, body=tuple(expand(d.body, const, err))))
        elif isinstance(d, ast.Step) and d.op.func == "dialogue":
            steps = _expand_one(d, const, err)
            for st in steps[:-1]:
                if st.name in taken:
                    err(f"dialogue step '{d.name}' makes a step named '{st.name}', which the recipe already declares",
                        d.span, code="duplicate-definition", name=st.name, hint=f"rename the step '{st.name}'")
                    return list(decls)
            out.extend(steps)
        else:
            out.append(d)
    return out


def _names(decls: Sequence[Any]) -> set[str]:
    names: set[str] = set()
    for d in decls:
        if isinstance(d, ast.Loop):
            names |= _names(d.body)
        elif hasattr(d, "name"):
            names.add(str(d.name))
    return names


def _expand_one(d: ast.Step, const: Any, err: Any) -> list[ast.Step]:
    sp = d.span
    kw = d.op.kw()
    pos = d.op.positional
    if not pos:
        return [d]   # the checker reports the missing input
    for name in kw:
        if name not in DIALOGUE.options:
            err(f"unknown option '{name}' for operator 'dialogue'", kw[name].span, code="unknown-option", name=name,
                operator="dialogue", valid=list(DIALOGUE.options), hint=f"valid options: {', '.join(DIALOGUE.options)}")
            return [d]   # kept whole: its fields exist, so no follow-on errors
    for name in ("tutor", "student"):
        if name not in kw:
            err(f"dialogue() needs {name}=", d.op.span, code="missing-argument", name=name, operator="dialogue",
                hint="dialogue(seeds, tutor=teacher, student=student, max_turns=4, stop=...)")
            return [d]   # kept whole: its fields exist, so no follow-on errors
    if d.outputs:
        err("dialogue() outputs keep their names (messages, last_message, ...); rename them with a derive step",
            d.outputs[0].span, code="too-many-outputs", operator="dialogue")
        return [d]
    turns = const(kw["max_turns"].value) if "max_turns" in kw else DIALOGUE.options["max_turns"].default
    if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= 20:
        return [d]   # kept whole: the option check reports max_turns' type or range
    base = d.name

    def lit(v: Any) -> ast.Literal:
        return ast.Literal(v, sp)

    def name(n: str) -> ast.Name:
        return ast.Name(n, sp)

    steps: list[ast.Step] = [ast.Step(f"{base}__open", ast.Call("derive", (
        _arg(None, pos[0], sp), _arg("messages", ast.ListExpr((), sp), sp), _arg("last_message", lit(""), sp),
        _arg("last_role", lit(""), sp), _arg("turns", lit(0), sp), _arg("dialogue_done", lit(False), sp),
        _arg("dialogue_stop", lit(""), sp)), sp), (), d.doc, sp)]
    state_out = tuple(ast.Output(n, None, True, sp) for n in STATE)
    shared = [kw[k] for k in ("max_tokens", "temperature") if k in kw]
    if "stop" in kw:
        shared.append(_arg("stop", kw["stop"].value, kw["stop"].span))

    def turn(step: str, prev: str, role: str, prompt: ast.Arg | None, default: str, system: ast.Arg | None,
             last: bool) -> ast.Step:
        who = kw[role]   # tutor= or student=: this turn's model
        args = [_arg(None, name(prev), sp), _arg("role", lit(role), sp), _arg("model", who.value, who.span)]
        args.append(_arg("prompt", prompt.value, prompt.span) if prompt is not None else _arg("prompt", lit(default), sp))
        if system is not None:
            args.append(_arg("system", system.value, system.span))
        if last:
            args.append(_arg("last", lit(True), sp))
        return ast.Step(step, ast.Call("dialogue_turn", tuple(args + shared), sp), state_out, None, sp)

    from synthlang.ops.base import TEMPLATE_DIR

    defaults = {k: (TEMPLATE_DIR / f"dialogue_{k}.j2").read_text(encoding="utf-8") for k in ("opening", "student", "tutor")}
    names = [f"{base}__s0"]
    steps.append(turn(names[0], f"{base}__open", "student", kw.get("opening_prompt"), defaults["opening"],
                      kw.get("student_system"), False))
    for k in range(1, turns + 1):
        t, s = f"{base}__t{k}", f"{base}__s{k}"
        steps.append(turn(t, names[-1], "tutor", kw.get("tutor_prompt"), defaults["tutor"], kw.get("tutor_system"), False))
        steps.append(turn(s, t, "student", kw.get("student_prompt"), defaults["student"], kw.get("student_system"), k == turns))
        names += [t, s]
    ends = []
    for n in names[:-1]:
        steps.append(ast.Step(f"{n}__end", ast.Call("filter", (_arg(None, name(n), sp), _arg("where", name("dialogue_done"), sp)), sp),
                              (), None, sp))
        ends.append(f"{n}__end")
    ends.append(names[-1])   # the last turn: every dialogue still there (done or out of turns)
    acc = ends[0]
    for i, e in enumerate(ends[1:], 1):
        step = base if i == len(ends) - 1 else f"{base}__u{i}"
        steps.append(ast.Step(step, ast.Call("union", (_arg(None, name(acc), sp), _arg("with", name(e), sp)), sp), (), d.doc, sp))
        acc = step
    return steps
