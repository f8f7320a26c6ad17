"""LLM operators from the seed papers: new_question, evolve, reverse, strategy, label, judge, probe, verify(mode=llm).

Each follows its paper's structure with prompts in our own words
(``ops/templates/*.j2``). Randomness (few-shot draws, evolution methods) is
seeded from the row's content and the loop round, so runs are reproducible and
calls are cached.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from synthlang.errors import ConfigError
from synthlang.ops.answers import ANSWER_TYPES, compare, extract_answer, resolve_type
from synthlang.ops.base import (
    EXTRACT_MODES,
    KIND_BOOL,
    KIND_CHOICE,
    KIND_FIELD,
    KIND_FLOAT,
    KIND_INT,
    KIND_LIST,
    KIND_STR,
    LLM_OPTIONS,
    VERIFY_MODES,
    Operator,
    Option,
    OutputField,
    RowContext,
    RowFailure,
    options,
)

# Self-Instruct (Wang et al., 2022), section 2.3: instructions mentioning things a
# text-only model cannot handle are dropped.
SELF_INSTRUCT_BLOCKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                           "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram")

_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:new (?:task|problem|question|prompt)|task|problem|question|rewritten prompt|"
                     r"backward question|example \d+)\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)


def _rng(*parts: Any) -> random.Random:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return random.Random(int(h[:16], 16))


def _clean(text: str) -> str:
    s = text.strip()
    for _ in range(2):
        s = _PREFIX.sub("", s).strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1].strip()
    return s


def _field_var(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    f = opts.get("field")
    return {"input": row.get(f, "") if f else ""}


def _load_labels(opts: dict[str, Any], ctx: RowContext) -> list[str]:
    labels = list(opts.get("labels") or [])
    if opts.get("labels_file"):
        p = Path(ctx.base_dir) / str(opts["labels_file"])
        try:
            labels = [str(x) for x in json.loads(p.read_text(encoding="utf-8"))]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"labels_file {opts['labels_file']}: cannot read a JSON list of labels from {p}: {exc}") from None
    return labels


# --------------------------------------------------------------- new_question
def self_instruct_filter(text: str, min_words: int = 4, max_words: int = 150,
                         blocklist: Sequence[str] = SELF_INSTRUCT_BLOCKLIST) -> str | None:
    """Self-Instruct's rule filters; returns why a new instruction is dropped, or ``None`` to keep it.

    Rules: fewer than ``min_words`` or more than ``max_words`` words; a
    blocklisted word; starting with punctuation; not starting with an
    English (ASCII) letter or digit. (ROUGE-L < 0.7 against the pool is the
    ``dedup(mode="rouge")`` step that follows.)
    """
    words = text.split()
    if len(words) < min_words:
        return f"fewer than {min_words} words"
    if len(words) > max_words:
        return f"more than {max_words} words"
    low = " " + re.sub(r"[^a-z0-9 ]+", " ", text.lower()) + " "
    for w in blocklist:
        if f" {w} " in low:
            return f"mentions '{w}' (blocklist)"
    if not text[0].isascii() or not (text[0].isalnum() or text[0] in "\"'("):
        return "does not start with an English letter or digit"
    return None


def _few_shot(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> list[dict[str, Any]]:
    f = opts.get("field") or "question"
    k = int(opts.get("k") or 3)
    texts = [str(r.get(f, "")) for r in rows]
    out = []
    for i in range(len(rows)):
        rng = _rng("few-shot", ctx.round, opts.get("seed"), texts[i], i)
        others = [t for j, t in enumerate(texts) if j != i]
        shots = rng.sample(others, min(k - 1, len(others))) if k > 1 else []
        out.append({"examples": [texts[i], *shots]})
    return out


def _new_question_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    s = _clean(text.split("\n\n")[0] if opts.get("first_paragraph", True) else text)
    why = self_instruct_filter(s, int(opts.get("min_words") or 4), int(opts.get("max_words") or 150),
                               tuple(SELF_INSTRUCT_BLOCKLIST if opts.get("blocklist") is None else opts["blocklist"]))
    if why:
        raise RowFailure(f"Self-Instruct filter: {why}")
    if s.strip().lower() in {str(e).strip().lower() for e in row.get("examples", [])}:
        raise RowFailure("copies one of its examples")
    return {"question": s}


NEW_QUESTION = Operator(
    name="new_question",
    doc="Write a new question from seed examples drawn from the input rows (few-shot), then filter it with "
        "Self-Instruct's rules; answer it with a following `answer` step. Output rows hold only the new question.",
    source="New Question, 'Balancing Cost and Effectiveness of Synthetic Data Generation Strategies for LLMs' (2024); "
           "Self-Instruct (Wang et al., 2022)",
    options=options(
        *LLM_OPTIONS,
        Option("field", KIND_FIELD, "question", doc="the field holding the seed questions/instructions"),
        Option("k", KIND_INT, 3, doc="examples per prompt: the row's own seed plus k-1 drawn from the input rows"),
        Option("min_words", KIND_INT, 4, doc="drop new questions shorter than this (words)", post=True),
        Option("max_words", KIND_INT, 150, doc="drop new questions longer than this (words)", post=True),
        Option("blocklist", KIND_LIST, None, post=True,
               doc="words that drop a question (default: Self-Instruct's list, meant for open instructions; "
                   "blocklist=[] turns it off, e.g. for math word problems)"),
        Option("first_paragraph", KIND_BOOL, True, doc="keep only the reply's first paragraph", post=True),
    ),
    outputs=(OutputField("question", "str", "the new question"),),
    uses_model=True,
    default_prompt="new_question.j2",
    postprocess=_new_question_post,
    prepare=_few_shot,
    inherit=False,
    template_vars=("examples",),
)

# --------------------------------------------------------------------- evolve
# Evol-Instruct (Xu et al., 2023, WizardLM), section 3.1: in-depth evolving has five operations
# (add constraints, deepening, concretizing, increased reasoning steps, complicate input); in-breadth
# evolving mutates into a new prompt of the same domain but rarer topic.
EVOL_METHODS = {
    "constraints": "Add one more constraint or requirement to the prompt.",
    "deepen": "If the prompt asks about a specific issue, make the question go deeper and broader.",
    "concretize": "Replace general concepts in the prompt with more specific ones.",
    "reasoning": "If the prompt can be solved with a few simple steps, rewrite it so that it explicitly needs several steps of reasoning.",
    "breadth": "In-breadth: a brand-new prompt in the same domain on a rarer topic, of similar length and difficulty "
               "(its own prompt, without depth's word limit).",
}
EVOL_LEAKS = ("#rewritten prompt#", "#given prompt#", "#created prompt#", "given prompt", "rewritten prompt", "created prompt")


def _evolve_prepare(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> list[dict[str, Any]]:
    method = opts.get("method") or "random"
    names = list(EVOL_METHODS)
    f = opts.get("field") or "instruction"
    out = []
    for r in rows:
        m = method if method != "random" else names[_rng("evol", ctx.round, r.get(f)).randrange(len(names))]
        out.append({"evol_method": m, "instruction_for_method": EVOL_METHODS[m]})
    return out


def evolution_failure(parent: str, evolved: str) -> str | None:
    """Evol-Instruct's elimination rules for an evolved prompt; the reason, or ``None`` to keep it.

    Rules: no change from the parent (same text once case and punctuation are
    ignored); near-empty (fewer than 3 words); copies words of the evolving
    template ("given prompt", "#Rewritten Prompt#").
    """
    norm = lambda s: re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()  # noqa: E731
    if len(evolved.split()) < 3:
        return "near-empty evolved prompt"
    if norm(evolved) == norm(parent):
        return "no change from the parent prompt"
    low = evolved.lower()
    for w in EVOL_LEAKS:
        if w in low:
            return f"leaks template words ('{w}')"
    return None


def _evolve_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    s = _clean(text)
    why = evolution_failure(str(row.get(opts.get("field") or "instruction", "")), s)
    if why:
        raise RowFailure(f"Evol-Instruct elimination: {why}")
    return {"evolved": s, "evol_method": row.get("evol_method"), "evol_parent": row.get(opts.get("field") or "instruction")}


EVOLVE = Operator(
    name="evolve",
    doc="Evol-Instruct: rewrite a prompt by an in-depth operation (constraints, deepen, concretize, reasoning) or "
        "in-breadth mutation, then apply the elimination rules (no change, near-empty, leaked template words).",
    source="Evol-Instruct, 'WizardLM: Empowering Large Language Models to Follow Complex Instructions' (2023)",
    options=options(
        *LLM_OPTIONS,
        Option("field", KIND_FIELD, "instruction", doc="the prompt to evolve"),
        Option("method", KIND_CHOICE, "random", choices=("random", *EVOL_METHODS),
               doc="the evolution; random draws one per row and round (seeded)"),
    ),
    outputs=(OutputField("evolved", "str", "the evolved prompt"), OutputField("evol_method", "str", "the operation used"),
             OutputField("evol_parent", "str", "the prompt it was evolved from (for the equal/not-equal check)")),
    uses_model=True,
    default_prompt="evolve.j2",
    postprocess=_evolve_post,
    prompt_vars=_field_var,
    prepare=_evolve_prepare,
    template_vars=("evol_method", "instruction_for_method"),
)

# -------------------------------------------------------------------- reverse
# RevThink (Chen et al., 2024), official code google-research/RevThink augment_data.py: the teacher sees
# "<question> The correct answer is <gold>." with task few-shot examples and rules (use the answer to pose a
# related inverse question; for multiple choice keep the number of options, exactly one correct, its answer
# present in the input question; differ from the input), and "The correct answer is (X)." is cut from the reply
# (remove_backward_answer). Each task owns its prompt (ops/templates/reverse_<task>.j2); examples are ours.
REVERSE_SHOTS: dict[str, list[dict[str, str]]] = {
    "math": [
        {"q": "Tom has 3 boxes with 4 pens each. How many pens does he have?", "a": "12",
         "b": "Tom has some boxes with 4 pens each. If he has 12 pens in all, how many boxes does he have?"},
        {"q": "A shirt costs $20 and is 25% off. What is the sale price?", "a": "15",
         "b": "A shirt is 25% off and now sells for $15. What was its price before the discount?"},
    ],
    "mc": [
        {"q": "Which planet is closest to the Sun? (A) Venus (B) Mercury (C) Mars", "a": "B",
         "b": "Mercury is a planet. Which of these is true of it? (A) it is the closest planet to the Sun (B) it is the largest planet (C) it is a moon of Mars"},
    ],
    "yesno": [
        {"q": "Is 17 a prime number?", "a": "yes",
         "b": "If 17 is a prime number, how many whole numbers divide 17 exactly? (A) two (B) three"},
        {"q": "Can a penguin fly?", "a": "no",
         "b": "If a penguin cannot fly, how does a penguin mostly move through water? (A) by swimming with its wings (B) by flying above it"},
    ],
}
# RevThink's remove_backward_answer, widened from "(X)" to any stated answer (a numeric leak gives the task away too)
_BACKWARD_LEAK = re.compile(r"\s*(?:The\s+)?(?:correct\s+)?answer\s+is\s*:?\s*\(?[^\n.]*\)?\.?\s*$", re.IGNORECASE)


def answer_text(value: Any, task: str = "math") -> str:
    """An answer as a prompt shows it: a bool as yes/no (never True/False), a letter as (X), numbers plainly."""
    from synthlang.ops.answers import as_choice, as_yesno

    if isinstance(value, bool) or task == "yesno":
        return as_yesno(value) or str(value)
    if task == "mc":
        letter = as_choice(value)
        return f"({letter})" if letter else str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _reverse_vars(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    task = opts.get("task") or "math"
    shots = [{**ex, "a": answer_text(ex["a"], task)} for ex in REVERSE_SHOTS[task]]
    return {"input": row.get(opts.get("field") or "question", ""),
            "answer_text": answer_text(row.get(opts.get("answer") or "answer", ""), task), "shots": shots}


def remove_backward_answer(text: str) -> str:
    """Cut a trailing "The correct answer is ..." from a backward question (RevThink's answer-leak removal)."""
    return _BACKWARD_LEAK.sub("", text).strip()


def _reverse_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    s = _clean(text.split("\n\n")[0])
    s = re.sub(r"^\s*(?:OUTPUT|Backward question|Reversed problem)\s*:\s*", "", s, flags=re.IGNORECASE)
    s = remove_backward_answer(s)
    if len(s.split()) < 4:
        raise RowFailure("backward question is near-empty")
    return {"backward_question": s}


REVERSE = Operator(
    name="reverse",
    doc="RevThink: from (question, correct answer) write a backward question that starts from the answer, with the "
        "official rules per task (math: a given quantity becomes the unknown; mc/yesno: an inverse multiple-choice "
        "question with one correct option) and the answer leak cut off.",
    source="RevThink, 'Reverse Thinking Makes LLMs Stronger Reasoners' (2024); google-research/RevThink augment_data.py",
    options=options(
        *LLM_OPTIONS,
        Option("field", KIND_FIELD, "question", doc="the forward question"),
        Option("answer", KIND_FIELD, "answer", doc="the correct answer (the gold, as RevThink does); a bool renders as yes/no"),
        Option("task", KIND_CHOICE, "math", choices=tuple(REVERSE_SHOTS),
               doc="math, mc (multiple choice) or yesno: each has its own prompt and examples"),
    ),
    outputs=(OutputField("backward_question", "str", "the backward question, answer leak removed"),),
    uses_model=True,
    default_prompt="reverse_math.j2",
    postprocess=_reverse_post,
    prompt_vars=_reverse_vars,
    template_vars=("answer_text", "shots"),
)
_REVERSE_BY_TASK = {t: replace(REVERSE, default_prompt=f"reverse_{t}.j2") for t in REVERSE_SHOTS}
REVERSE = replace(REVERSE, select=lambda opts: _REVERSE_BY_TASK[opts.get("task") or "math"])

# ---------------------------------------------------------- verify(mode=llm)
# RevThink's consistency check (official prompt.py): the teacher sees Q1 (question), A1 (gold), Q2 (backward
# question) and A2 (the backward answer extracted from the backward reasoning), with few-shot examples, and
# outputs True or False; the verdict is the last true/false in the reply (get_true_false).


def _consistency_vars(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    task = opts.get("task") or "math"
    return {"q1": row.get(opts.get("field") or "question", ""), "a1": answer_text(row.get(opts.get("gold") or "gold"), task),
            "q2": row.get(opts.get("other") or "backward_question", ""),
            "a2": answer_text(row.get(opts.get("answer") or "backward_answer"), "mc" if task != "math" else "math")}


def _consistency_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    words = re.findall(r"\b(true|false)\b", text, flags=re.IGNORECASE)
    verdict = words[-1].lower() == "true" if words else None
    if verdict is None:
        yn = extract_answer(text, "yesno")
        verdict = None if yn is None else yn == "yes"
    if verdict is None:
        raise RowFailure("consistency check gave no True/False")
    return {"verified": verdict, "verify_reason": text.strip()[:300]}


VERIFY_LLM = Operator(
    name="verify",
    doc="LLM consistency check (RevThink): a model sees the question with its gold answer and the backward question "
        "with its answer, and says True when the backward answer is correct and found in the question.",
    source="RevThink (2024); google-research/RevThink prompt.py (consistency_check_prompt_math / _mcq)",
    options=options(
        *LLM_OPTIONS,
        Option("mode", KIND_CHOICE, "llm", choices=VERIFY_MODES),
        Option("field", KIND_FIELD, "question", doc="the forward question (Q1)"),
        Option("gold", KIND_FIELD, "gold", doc="its gold answer (A1)"),
        Option("other", KIND_FIELD, "backward_question", doc="the backward question (Q2)"),
        Option("answer", KIND_FIELD, "backward_answer", doc="the answer extracted from the backward reasoning (A2)"),
        Option("task", KIND_CHOICE, "math", choices=tuple(REVERSE_SHOTS), doc="math, mc or yesno: which prompt and examples"),
    ),
    outputs=(OutputField("verified", "bool", "True: the backward answer is correct and consistent with the question"),
             OutputField("verify_reason", "str", "the model's reasoning")),
    uses_model=True,
    default_prompt="verify_llm.j2",
    postprocess=_consistency_post,
    prompt_vars=_consistency_vars,
    template_vars=("q1", "a1", "q2", "a2"),
)
_VERIFY_LLM_BY_TASK = {"math": VERIFY_LLM, "mc": replace(VERIFY_LLM, default_prompt="verify_llm_mc.j2"),
                       "yesno": replace(VERIFY_LLM, default_prompt="verify_llm_mc.j2")}


def verify_llm_for(opts: dict[str, Any]) -> Operator:
    """The consistency-check variant for a task (math, or multiple choice for mc and yesno)."""
    return _VERIFY_LLM_BY_TASK[opts.get("task") or "math"]


# ------------------------------------------------------------------- strategy
STRATEGIES = ("answer_augmentation", "question_rephrase", "new_question")


def choose_strategy(budget: int, seeds: int, low: float = 2.0, high: float = 8.0) -> str:
    """Balancing Cost (2024)'s rule of thumb as thresholds on the ratio ``budget / seeds``.

    Below ``low`` queries per seed, answer augmentation; from ``low`` up to
    ``high``, question rephrase; at ``high`` or more, new questions. The paper
    finds answer augmentation best at low ratios and new questions best at
    high ones; the middle band and both numbers are our defaults and settable.
    """
    ratio = budget / max(seeds, 1)
    if ratio < low:
        return "answer_augmentation"
    if ratio < high:
        return "question_rephrase"
    return "new_question"


def strategy_calls(strategy: str) -> int:
    """LLM calls one augmented item costs: answer augmentation 1; rephrase and new question 2 (write + answer)."""
    return 1 if strategy == "answer_augmentation" else 2


def _strategy_prepare(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> list[dict[str, Any]]:
    budget = int(opts.get("budget") or len(rows))
    strat = opts.get("strategy") or "auto"
    if strat == "auto":
        strat = choose_strategy(budget, len(rows), float(opts.get("low") or 2.0), float(opts.get("high") or 8.0))
    shots = _few_shot(rows, {**opts, "k": 3}, ctx) if strat == "new_question" else [{} for _ in rows]
    # the budget counts every call the strategy causes: a rephrased or new question also needs its answer call
    items = budget // strategy_calls(strat)
    base, extra = divmod(items, max(len(rows), 1))
    return [{"strategy": strat, "__n__": base + (1 if i < extra else 0), **shots[i]} for i in range(len(rows))]


def _strategy_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    strat = row["strategy"]
    if strat == "answer_augmentation":
        return {"strategy": strat, "aug_question": row.get(opts.get("field") or "question"), "aug_reasoning": text.strip(),
                "aug_answer": extract_answer(text, "number"), "keeps_gold": True}
    q = _clean(text.split("\n\n")[0])
    if len(q.split()) < 4:
        raise RowFailure("question is near-empty")
    return {"strategy": strat, "aug_question": q, "aug_reasoning": None, "aug_answer": None,
            "keeps_gold": strat == "question_rephrase"}


STRATEGY = Operator(
    name="strategy",
    doc="Strategy auto: from the ratio of query budget to seed count choose answer augmentation, question rephrase "
        "or new question, and spend the budget over the seeds. The budget counts every call the strategy causes: an "
        "answer-augmented item costs 1 call, a rephrased or new question 2 (it is written here and answered by a "
        "following `answer` step), so this step makes budget // cost items, spread evenly over the seeds.",
    source="'Balancing Cost and Effectiveness of Synthetic Data Generation Strategies for LLMs' (2024)",
    options=options(
        *LLM_OPTIONS,
        Option("field", KIND_FIELD, "question", doc="the seed question"),
        Option("budget", KIND_INT, None, doc="total LLM queries to spend, answer calls included (default: one per seed)"),
        Option("strategy", KIND_CHOICE, "auto", choices=("auto", *STRATEGIES), doc="auto, or force one"),
        Option("low", KIND_FLOAT, 2.0, doc="below this many queries per seed: answer augmentation"),
        Option("high", KIND_FLOAT, 8.0, doc="at or above this many queries per seed: new questions"),
    ),
    outputs=(OutputField("strategy", "str", "the chosen strategy"),
             OutputField("aug_question", "str", "the question (rephrased or new; the seed's for answer augmentation)"),
             OutputField("aug_reasoning", "str", "answer augmentation: the reasoning; else null"),
             OutputField("aug_answer", "any", "answer augmentation: the extracted number; else null"),
             OutputField("keeps_gold", "bool", "whether the seed's gold answer still applies")),
    uses_model=True,
    default_prompt="strategy.j2",
    postprocess=_strategy_post,
    prompt_vars=_field_var,
    prepare=_strategy_prepare,
    template_vars=("strategy", "examples"),
)

# ---------------------------------------------------------------------- label


def _label_prepare(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> list[dict[str, Any]]:
    labels = _load_labels(opts, ctx)
    extra: dict[str, Any] = {"labels": labels}
    mode = opts.get("mode") or "class"
    if mode == "spans":
        extra = {"entity_types": list(opts.get("entity_types") or ["entity"]), "max_items": int(opts.get("max_items") or 20)}
    elif mode == "relations":
        head, tail = _relation_roles(opts)
        extra = {"head": head, "tail": tail, "max_items": int(opts.get("max_items") or 20)}
    if labels and (opts.get("mode") or "class") == "class" and opts.get("constrain", True):
        # constrained decoding: the reply is one JSON string from the closed label set
        extra["__schema__"] = {"enum": labels}
    return [dict(extra) for _ in rows]


def match_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a reply names: exact (case/punctuation-insensitive), contained, or the closest by spelling (cutoff 0.6)."""
    norm = lambda s: re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")  # noqa: E731
    reply = norm(text.strip().split("\n")[0].strip('"'))
    by_norm = {norm(lb): lb for lb in labels}
    if reply in by_norm:
        return by_norm[reply]
    hits = [lb for n, lb in by_norm.items() if n and n in reply]
    if hits:
        return max(hits, key=len)
    close = difflib.get_close_matches(reply, list(by_norm), n=1, cutoff=0.6)
    return by_norm[close[0]] if close else None


def sequence_confidence(logprobs: Sequence[float] | None) -> float | None:
    """exp(sum of token logprobs): the probability the model gave its whole (short) reply; ``None`` without logprobs."""
    if not logprobs:
        return None
    return float(math.exp(sum(logprobs)))


def mean_token_confidence(logprobs: Sequence[float] | None) -> float | None:
    """exp(mean token logprob): geometric-mean token probability of a (longer) reply; ``None`` without logprobs."""
    if not logprobs:
        return None
    return float(math.exp(sum(logprobs) / len(logprobs)))


def _spans_schema(opts: dict[str, Any]) -> dict[str, Any] | None:
    """Spans mode: ``{"entities": [{"text", "type"}]}`` with at most ``max_items`` entities, so a small model cannot
    repeat entities until ``max_tokens``."""
    item: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 200},
                                                             "type": {"type": "string"}},
                            "required": ["text", "type"]}
    if opts.get("entity_types"):
        item["properties"]["type"]["enum"] = list(opts["entity_types"])
    return {"type": "object", "properties": {"entities": {"type": "array", "items": item, "maxItems": int(opts.get("max_items") or 20)}},
            "required": ["entities"]}


def _relations_schema(opts: dict[str, Any]) -> dict[str, Any]:
    """Relations mode (ADE extraction): ``{"relations": [{"head", "tail"}]}``, at most ``max_items``."""
    head, tail = _relation_roles(opts)
    item = {"type": "object", "properties": {head: {"type": "string", "maxLength": 200}, tail: {"type": "string", "maxLength": 200}},
            "required": [head, tail]}
    return {"type": "object", "properties": {"relations": {"type": "array", "items": item, "maxItems": int(opts.get("max_items") or 20)}},
            "required": ["relations"]}


def _relation_roles(opts: dict[str, Any]) -> tuple[str, str]:
    roles = list(opts.get("relation") or ["drug", "effect"])
    if len(roles) != 2:
        raise ConfigError(f"label(mode=\"relations\"): relation= needs two role names, e.g. [\"drug\", \"effect\"]; got {roles}")
    return str(roles[0]), str(roles[1])


def _json_reply(text: str, key: str) -> list[Any]:
    try:
        obj = json.loads(text)
    except ValueError:
        raise RowFailure("reply is not JSON") from None
    items = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(items, list):
        raise RowFailure(f"reply has no '{key}' list")
    return items


def _spans_post(row: dict[str, Any], text: str, opts: dict[str, Any], logprobs: list[float] | None = None) -> dict[str, Any]:
    ents = _json_reply(text, "entities")
    src = str(row.get(opts.get("field") or "text", "")).lower()
    ents = [e for e in ents if isinstance(e, dict) and str(e.get("text", "")).strip()
            and (not opts.get("grounded", True) or str(e["text"]).lower() in src)]
    return {"entities": ents[: int(opts.get("max_items") or 20)], "label_confidence": mean_token_confidence(logprobs)}


def _relations_post(row: dict[str, Any], text: str, opts: dict[str, Any], logprobs: list[float] | None = None) -> dict[str, Any]:
    head, tail = _relation_roles(opts)
    rels = _json_reply(text, "relations")
    src = str(row.get(opts.get("field") or "text", "")).lower()
    keep = []
    for r in rels:
        if not isinstance(r, dict) or not str(r.get(head, "")).strip() or not str(r.get(tail, "")).strip():
            continue
        if opts.get("grounded", True) and not (str(r[head]).lower() in src and str(r[tail]).lower() in src):
            continue
        keep.append({head: r[head], tail: r[tail]})
    return {"relations": keep[: int(opts.get("max_items") or 20)], "label_confidence": mean_token_confidence(logprobs)}


def _label_post(row: dict[str, Any], text: str, opts: dict[str, Any], logprobs: list[float] | None = None) -> dict[str, Any]:
    mode = opts.get("mode") or "class"
    if mode == "spans":
        return _spans_post(row, text, opts, logprobs)
    if mode == "relations":
        return _relations_post(row, text, opts, logprobs)
    labels = row.get("labels") or []
    lb = match_label(text, labels)
    if lb is None:
        raise RowFailure(f"reply names none of the {len(labels)} labels: {text.strip()[:60]!r}")
    return {"label": lb, "label_confidence": sequence_confidence(logprobs)}


# The closed-label-set options shared by `label` and `probe` (class mode).
CLASS_LABEL_OPTIONS = (
    Option("labels", KIND_LIST, None, doc="class mode: the closed label set"),
    Option("labels_file", KIND_STR, None, doc="class mode: a JSON list of labels, relative to the recipe"),
    Option("constrain", KIND_BOOL, True,
           doc="class mode: constrain the reply to the label set (JSON-schema enum). llama.cpp then reports logprobs of "
               "the unconstrained distribution, so confidences are tiny (0.00013-0.00022 measured on SmolLM2-135M) and "
               "only comparable within a class: threshold them per class (adaptive_select), not with one number"),
)


_LABEL_OPTIONS = options(
    *LLM_OPTIONS,
    Option("field", KIND_FIELD, "text", doc="the text to annotate"),
    Option("mode", KIND_CHOICE, "class", choices=("class", "spans", "relations"),
           doc="class: one label from a closed set; spans: typed entities; relations: (head, tail) pairs such as drug -> adverse event"),
    *CLASS_LABEL_OPTIONS,
    Option("entity_types", KIND_LIST, None, doc="spans mode: allowed entity types"),
    Option("relation", KIND_LIST, ["drug", "effect"], doc="relations mode: the two role names of a relation"),
    Option("max_items", KIND_INT, 20, doc="spans/relations mode: at most this many items (JSON-schema maxItems)"),
    Option("grounded", KIND_BOOL, True, doc="spans/relations mode: drop items whose text is not in the input", post=True),
)

LABEL_CLASS = Operator(
    name="label",
    doc="A teacher annotates unlabeled text: one class from a closed label set with its confidence from token "
        "logprobs (mode=class), typed entity spans (mode=spans) or head->tail relations such as drug->adverse event "
        "(mode=relations), both through a JSON schema with a capped item count.",
    source="LLKD (2024); LLM teacher for news topics (2024); UniversalNER (2023); ADE extraction (2023)",
    options=_LABEL_OPTIONS,
    outputs=(OutputField("label", "str", "the label"),
             OutputField("label_confidence", "float", "probability of the reply (exp of the summed token logprobs)")),
    uses_model=True,
    default_prompt="label.j2",
    postprocess=_label_post,
    prompt_vars=_field_var,
    prepare=_label_prepare,
    logprobs=lambda opts: 1,
    template_vars=("labels",),
)
LABEL_SPANS = replace(
    LABEL_CLASS,
    outputs=(OutputField("entities", "json", "[{text, type}], grounded in the input, at most max_items"),
             OutputField("label_confidence", "float", "mean token probability of the reply")),
    default_prompt="label_spans.j2", json_schema=_spans_schema, template_vars=("entity_types", "max_items"),
)
LABEL_RELATIONS = replace(
    LABEL_CLASS,
    outputs=(OutputField("relations", "json", "[{head: ..., tail: ...}] with the relation's role names, at most max_items"),
             OutputField("label_confidence", "float", "mean token probability of the reply")),
    default_prompt="label_relations.j2", json_schema=_relations_schema, template_vars=("head", "tail", "max_items"),
)


def _label_select(opts: dict[str, Any]) -> Operator:
    return {"class": LABEL_CLASS, "spans": LABEL_SPANS, "relations": LABEL_RELATIONS}[opts.get("mode") or "class"]


def _relations_requires(opts: dict[str, Any]) -> list[tuple[str, str, str]]:
    roles = opts.get("relation")
    if roles is not None and len(list(roles)) != 2:
        return [("relation", f'mode="relations" needs two role names in relation=, got {len(list(roles))}',
                 'e.g. relation=["drug", "effect"]')]
    return []


LABEL_RELATIONS = replace(LABEL_RELATIONS, extra={**LABEL_RELATIONS.extra, "requires": _relations_requires})
LABEL = replace(LABEL_CLASS, select=_label_select)

# ---------------------------------------------------------------------- judge


def _judge_vars(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    return {"input": row.get(opts.get("field") or "instruction", ""), "response": row.get(opts.get("response") or "response", ""),
            "response_a": row.get(opts.get("response") or "response", ""), "response_b": row.get(opts.get("response_b") or "", ""),
            "rubric": opts.get("rubric") or "helpfulness, correctness and level of detail", "scale": int(opts.get("scale") or 10)}


def _judge_schema(opts: dict[str, Any]) -> dict[str, Any]:
    """Score mode: ``{"score": 1..scale, "reason"}``; pairwise mode: ``{"winner": "A"|"B", "reason"}``."""
    if (opts.get("mode") or "score") == "equal":
        return {"type": "object", "properties": {"equal": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 160}},
                "required": ["equal", "reason"]}
    if (opts.get("mode") or "score") == "pairwise":
        return {"type": "object", "properties": {"winner": {"type": "string", "enum": ["A", "B"]}, "reason": {"type": "string", "maxLength": 160}},
                "required": ["winner", "reason"]}
    return {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": int(opts.get("scale") or 10)},
                                             "reason": {"type": "string", "maxLength": 160}}, "required": ["score", "reason"]}


def _judge_obj(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _judge_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    if (opts.get("mode") or "score") == "pairwise":
        return _pairwise_post(row, text, opts)
    obj = _judge_obj(text)
    score = obj.get("score") if obj else None
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        m = re.search(r"\d+(?:\.\d+)?", text)
        score = float(m.group(0)) if m else None
    if score is None:
        raise RowFailure("judge gave no score")
    scale = int(opts.get("scale") or 10)
    return {"score": float(min(max(score, 1), scale)), "judge_reason": (obj.get("reason") if obj else text[:300])}


def _equal_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Evol-Instruct's "no information gain" check: ``equal`` is True when the two prompts are judged equal."""
    obj = _judge_obj(text)
    eq = obj.get("equal") if obj else None
    if not isinstance(eq, bool):
        low = text.lower()
        eq = False if "not equal" in low else True if "equal" in low else None
    if eq is None:
        raise RowFailure("judge said neither equal nor not equal")
    return {"equal": eq, "judge_reason": obj.get("reason") if obj else text[:300]}


def _pairwise_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    obj = _judge_obj(text)
    w = obj.get("winner") if obj else None
    if w not in ("A", "B"):
        m = re.search(r"\b([AB])\b", text)
        w = m.group(1) if m else None
    if w is None:
        raise RowFailure("judge named no winner")
    return {"winner": w, "judge_reason": obj.get("reason") if obj else text[:300]}


_JUDGE_OPTIONS = options(
    *LLM_OPTIONS,
    Option("mode", KIND_CHOICE, "score", choices=("score", "pairwise", "equal"),
           doc="score: rubric score; pairwise: which of two responses is better; equal: are two prompts equal "
               "(Evol-Instruct's no-information-gain check; field = the parent, response = the evolved prompt)"),
    Option("field", KIND_FIELD, "instruction", doc="the instruction/question"),
    Option("response", KIND_FIELD, "response", doc="the response (A in pairwise mode)"),
    Option("response_b", KIND_FIELD, None, doc="pairwise mode: response B"),
    Option("rubric", KIND_STR, "helpfulness, correctness and level of detail", doc="what the judge rates"),
    Option("scale", KIND_INT, 10, doc="top of the score range"),
)

JUDGE_SCORE = Operator(
    name="judge",
    doc="An LLM judge through structured output (JSON schema): a score on a rubric (1..scale, mode=score, prompt "
        "judge.j2), or which of two responses is better (mode=pairwise, prompt judge_pairwise.j2, shows A and B).",
    source="TAPIR (2024); Evol-Instruct (2023); LLM-as-a-judge (Zheng et al., 2023)",
    options=_JUDGE_OPTIONS,
    outputs=(OutputField("score", "float", "rubric score, 1..scale"),
             OutputField("judge_reason", "str", "the judge's reason")),
    uses_model=True,
    default_prompt="judge.j2",
    postprocess=_judge_post,
    prompt_vars=_judge_vars,
    json_schema=_judge_schema,
    template_vars=("response", "rubric", "scale"),
)
JUDGE_PAIRWISE = replace(
    JUDGE_SCORE,
    outputs=(OutputField("winner", "str", "A or B: the better response"),
             OutputField("judge_reason", "str", "the judge's reason")),
    default_prompt="judge_pairwise.j2", postprocess=_pairwise_post, template_vars=("response_a", "response_b", "rubric"),
    extra={"requires": lambda o: [] if o.get("response_b") else [
        ("response_b", 'mode="pairwise" compares two responses: name the second with response_b=FIELD',
         "e.g. judge(rows, mode=\"pairwise\", response=answer_a, response_b=answer_b)")]},
)


JUDGE_EQUAL = replace(
    JUDGE_SCORE,
    outputs=(OutputField("equal", "bool", "True: no information gain (the evolved prompt equals its parent)"),
             OutputField("judge_reason", "str", "the judge's reason")),
    default_prompt="judge_equal.j2", postprocess=_equal_post, template_vars=("response",),
)


def _judge_select(opts: dict[str, Any]) -> Operator:
    return {"pairwise": JUDGE_PAIRWISE, "equal": JUDGE_EQUAL}.get(opts.get("mode") or "score", JUDGE_SCORE)


JUDGE = replace(JUDGE_SCORE, select=_judge_select)

# ---------------------------------------------------------------------- probe


# the extract mode a student's reply is read with, by answer type (labels match against the label set instead)
TYPE_EXTRACT = {"number": "number", "choice": "choice", "yesno": "yesno", "label": "text", "text": "text"}


def _probe_type(row: dict[str, Any], opts: dict[str, Any]) -> str:
    """The answer type a probe row compares by: label set, ``answer_type``, a bool gold, ``extract``, the gold's look."""
    if row.get("labels"):
        return "label"
    extract = opts.get("extract")
    return resolve_type(opts.get("answer_type"), None if extract in (None, "auto") else extract,
                        row.get(opts.get("gold") or "gold"))


def _probe_vars(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    from synthlang.ops.core import ANSWER_FORMAT

    kind = _probe_type(row, opts)
    extract = opts.get("extract")
    mode = extract if extract not in (None, "auto") else TYPE_EXTRACT[kind]
    return {"input": row.get(opts.get("field") or "question", ""), "answer_format": ANSWER_FORMAT[mode]}


def _probe_post(row: dict[str, Any], text: str, opts: dict[str, Any], logprobs: list[float] | None = None) -> dict[str, Any]:
    labels = row.get("labels") or []
    gold = row.get(opts.get("gold") or "gold")
    kind = _probe_type(row, opts)
    if labels:
        ans: Any = match_label(text, labels)
        conf = sequence_confidence(logprobs)
    else:
        extract = opts.get("extract")
        ans = extract_answer(text, extract if extract not in (None, "auto") else TYPE_EXTRACT[kind])
        conf = mean_token_confidence(logprobs)
    correct = bool(ans is not None and compare(gold, ans, kind)[0])   # the same comparison as verify(mode="gold")
    if row.get("__truncated__"):
        correct = False          # the student did not finish: a failure, whatever it wrote so far
    return {"probe_answer": ans, "probe_correct": bool(correct), "probe_confidence": conf}


PROBE = Operator(
    name="probe",
    doc="Run a student model on rows: its answer, whether it matches gold, and its confidence from token logprobs "
        "(class mode: probability of the reply; otherwise geometric-mean token probability). Per-class figures come "
        "from a following `report` step.",
    source="LLM2LLM (2024); TAPIR (2024); PGKD (2024); LLKD (2024)",
    options=options(
        *LLM_OPTIONS,
        Option("field", KIND_FIELD, "question", doc="the question/text shown to the student"),
        Option("gold", KIND_FIELD, "gold", doc="the gold answer or label", post=True),
        Option("extract", KIND_CHOICE, "auto", choices=("auto", *EXTRACT_MODES),
               doc="how the student's answer is extracted (ignored when labels are given); auto: by the answer type"),
        Option("answer_type", KIND_CHOICE, "auto", choices=("auto", *ANSWER_TYPES), post=True,
               doc="how the student's answer is compared with gold, exactly as verify(mode=\"gold\") does; auto: "
                   "label with a label set, yesno for a bool gold, else from extract, else from the gold's value"),
        *CLASS_LABEL_OPTIONS,
    ),
    outputs=(OutputField("probe_answer", "any", "the student's answer"),
             OutputField("probe_correct", "bool", "whether it matches gold"),
             OutputField("probe_confidence", "float", "the student's confidence")),
    uses_model=True,
    default_prompt="probe.j2",
    postprocess=_probe_post,
    prompt_vars=_probe_vars,
    prepare=_label_prepare,
    logprobs=lambda opts: 1,
    template_vars=("labels", "entity_types", "answer_format"),
)
