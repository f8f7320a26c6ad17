"""Every (operator, mode) owns its default prompt, schema and outputs (issue 12 items 4-5).

For each LLM operator and each of its modes, the default prompt is rendered exactly as the runner renders it
(prepare, then prompt_vars) on a real row, and must ask for every output field the reply supplies. Fields that
synthlang computes itself (confidences from logprobs, verdicts from gold) are listed as such; a new output that
is neither asked for nor listed fails the completeness check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthlang.ops import OPERATORS
from synthlang.ops.base import RowContext
from synthlang.templates import render

DATA = Path(__file__).resolve().parents[1] / "recipes" / "data"
GSM = json.loads((DATA / "gsm8k" / "train_first1000.jsonl").read_text().splitlines()[0])
LABELS = json.loads((DATA / "banking77" / "categories.json").read_text())[:10]

ROW = {"question": GSM["question"], "answer": GSM["answer"], "gold": 72, "instruction": "Name three primary colors.",
       "response": "Red, yellow and blue.", "other_response": "Green, orange and purple.", "text": "My card arrived broken.",
       "backward_question": "Natalia sold clips to x friends in April ... what is x?", "backward_answer": 48,
       "is_yes": True}

# (operator, options, {output field: phrases the rendered prompt must contain}); None = computed, not asked
CASES: list[tuple[str, dict, dict[str, tuple[str, ...] | None]]] = [
    ("generate", {"field": "instruction"}, {"text": ("Name three primary colors.",)}),
    ("rephrase", {"field": "question"}, {"rephrased": ("Rewrite the question",)}),
    ("answer", {"extract": "number"}, {"reasoning": ("step by step",), "final_answer": ('"The answer is N."', "number")}),
    ("answer", {"extract": "boxed"}, {"reasoning": ("step by step",), "final_answer": ("\\boxed{}",)}),
    ("answer", {"extract": "choice"}, {"reasoning": ("step by step",), "final_answer": ("The answer is (X).", "letter")}),
    ("answer", {"extract": "yesno"}, {"reasoning": ("step by step",), "final_answer": ('"The answer is yes."', '"The answer is no."')}),
    ("answer", {"extract": "text"}, {"reasoning": ("step by step",), "final_answer": ('"The answer is ..."',)}),
    ("new_question", {"field": "question", "k": 2}, {"question": ("new task",)}),
    ("evolve", {"field": "instruction", "method": "constraints"}, {"evolved": ("Reply with the new prompt only", "constraint"),
                                                                  "evol_method": None, "evol_parent": None}),
    ("evolve", {"field": "instruction", "method": "breadth"}, {"evolved": ("Reply with the new prompt only", "brand-new"),
                                                              "evol_method": None, "evol_parent": None}),
    ("reverse", {"task": "math", "answer": "gold"}, {"backward_question": ("backward", "unknown", "The correct answer is 72.")}),
    ("reverse", {"task": "mc", "answer": "gold"}, {"backward_question": ("inverse multiple-choice question", "options")}),
    ("reverse", {"task": "yesno", "answer": "is_yes"}, {"backward_question": ("inverse question", "The correct answer is yes.")}),
    ("verify", {"mode": "llm", "task": "math", "gold": "gold"}, {"verified": ("True or False",), "verify_reason": ("Explain",)}),
    ("verify", {"mode": "llm", "task": "mc", "gold": "gold"}, {"verified": ("True or False",), "verify_reason": ("Explain",)}),
    ("strategy", {"strategy": "answer_augmentation", "budget": 1}, {
        "strategy": None, "aug_question": None, "aug_reasoning": ("step by step",), "aug_answer": ("The answer is N",),
        "keeps_gold": None}),
    ("strategy", {"strategy": "question_rephrase", "budget": 1}, {
        "strategy": None, "aug_question": ("Rewrite the question",), "aug_reasoning": None, "aug_answer": None, "keeps_gold": None}),
    ("strategy", {"strategy": "new_question", "budget": 1}, {
        "strategy": None, "aug_question": ("new problem",), "aug_reasoning": None, "aug_answer": None, "keeps_gold": None}),
    ("label", {"mode": "class", "labels": LABELS}, {"label": ("exactly one of these labels", "card_arrival"), "label_confidence": None}),
    ("label", {"mode": "spans", "entity_types": ["card", "money"], "max_items": 5},
     {"entities": ('"entities"', '"text"', '"type"', "card, money", "at most 5"), "label_confidence": None}),
    ("label", {"mode": "relations", "relation": ["drug", "effect"]},
     {"relations": ('"relations"', '"drug"', '"effect"', "at most 20"), "label_confidence": None}),
    ("judge", {"mode": "score", "scale": 5}, {"score": ('"score"', "to 5"), "judge_reason": ('"reason"',)}),
    ("judge", {"mode": "pairwise", "response_b": "other_response"},
     {"winner": ('"winner"', "Response B: Green, orange and purple."), "judge_reason": ('"reason"',)}),
    ("judge", {"mode": "equal", "field": "instruction", "response": "response"},
     {"equal": ('"equal"', "same constraints", "depth and breadth"), "judge_reason": ('"reason"',)}),
    ("probe", {"gold": "gold"}, {"probe_answer": ('"The answer is N."',), "probe_correct": None, "probe_confidence": None}),
    ("probe", {"gold": "is_yes"}, {"probe_answer": ('"The answer is yes."',), "probe_correct": None, "probe_confidence": None}),
    ("probe", {"gold": "category", "labels": LABELS}, {"probe_answer": ("Reply with the label only",), "probe_correct": None,
                                                       "probe_confidence": None}),
]


def _rendered(name: str, over: dict) -> tuple[object, dict, str]:
    op = OPERATORS[name]
    opts = {k: o.default for k, o in op.options.items()} | over
    if op.select is not None:
        op = op.select(opts)
        opts = {k: o.default for k, o in op.options.items()} | over
    rows = [dict(ROW), {**ROW, "question": "Tom has 3 boxes with 4 pens each. How many pens?"}]
    extra = op.prepare(rows, opts, RowContext()) if op.prepare else [{}, {}]
    row = {**rows[0], **{k: v for k, v in extra[0].items() if not k.startswith("__")}}
    values = {**row, **(op.prompt_vars(row, opts) if op.prompt_vars else {})}
    return op, opts, render(op.default_prompt_text() or "", values, f"{name}.default")


@pytest.mark.parametrize("name,over,asks", CASES, ids=[f"{c[0]}-{next(iter(c[1].values()))}" for c in CASES])
def test_default_prompt_asks_for_every_output(name, over, asks):
    op, opts, text = _rendered(name, over)
    assert [o.name for o in op.outputs] == list(asks), "every output is either asked for or listed as computed"
    for field, phrases in asks.items():
        for ph in phrases or ():
            assert ph in text, f"{name}{over}: the prompt does not ask for {field} ({ph!r} missing):\n{text}"
    schema = op.json_schema(opts) if op.json_schema else None
    if schema and schema.get("properties"):
        for prop in schema.get("required", []):
            assert f'"{prop}"' in text, f"{name}: the prompt does not name the schema field {prop}"


def test_every_llm_mode_is_covered():
    """Each choice of a mode-like option of an LLM operator has a prompt case (verify: mode=llm with each task)."""
    covered = {(n, k, v) for n, o, _ in CASES for k, v in o.items() if isinstance(v, str)}
    for name, op in OPERATORS.items():
        for opt in ("mode", "extract", "task", "strategy"):
            spec = op.options.get(opt)
            if spec is None or (not op.uses_model and name != "verify"):
                continue
            if name == "verify" and opt in ("mode", "extract"):
                continue            # gold and majority make no call; extract is the gold mode's
            if name == "probe" and opt == "extract":
                continue            # probe's prompt follows the answer type (cases above: number, yes/no, labels)
            for choice in spec.choices:
                if choice in ("auto", "random") or (name == "verify" and choice == "yesno"):
                    continue        # verify(task=yesno) uses the multiple-choice check, like RevThink's StrategyQA
                assert (name, opt, choice) in covered, f"{name}({opt}={choice!r}) has no default-prompt test"
    for method in ("constraints", "breadth"):
        assert ("evolve", "method", method) in covered


def test_breadth_evolution_has_no_depth_word_limit():
    _, _, breadth = _rendered("evolve", {"field": "instruction", "method": "breadth"})
    _, _, depth = _rendered("evolve", {"field": "instruction", "method": "constraints"})
    assert "10 to 20 words" in depth and "10 to 20 words" not in breadth


def test_prompts_show_bool_answers_as_yes_no_and_pairwise_shows_b():
    _, _, text = _rendered("reverse", {"task": "yesno", "answer": "is_yes"})
    assert "The correct answer is yes." in text and "True" not in text
    _, _, text = _rendered("judge", {"mode": "pairwise", "response_b": "other_response"})
    assert "Response A: Red, yellow and blue." in text and "Response B: Green" in text
    _, _, yn = _rendered("answer", {"extract": "yesno"})
    assert "The answer is N" not in yn
