"""Operator specs: options, outputs, prompts and the pure post-processing of results.

An operator is either an **LLM operator** (it renders a prompt per input row
and sample, one call each, then post-processes the reply into new fields) or a
**row operator** (it maps input rows to output rows without calls: verify
against gold, filter, dedup). Post-processing is pure and runs after the call
cache, so changing an extraction rule recomputes rows with zero LLM calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).with_name("templates")

# Option kinds the checker understands.
KIND_FIELD = "field"          # a field name of the input rows
KIND_MODEL = "model"          # a model declaration
KIND_TEMPLATE = "template"    # a template declaration or an inline string
KIND_EXPR = "expr"            # a safe expression over the row
KIND_STR = "str"
KIND_INT = "int"
KIND_FLOAT = "float"
KIND_BOOL = "bool"
KIND_LIST = "list"
KIND_CHOICE = "choice"
KIND_NODE = "node"            # the name of a source or step (its rows are handed to the operator)


LOCALITY_ROW = "row"
LOCALITY_GROUP = "group"
LOCALITY_GLOBAL = "global"
#: declared locality by operator name (issue 9): row-local operators stream; the rest are barriers.
LOCALITY: dict[str, str] = {
    **dict.fromkeys(("generate", "rephrase", "answer", "reverse", "evolve", "label", "judge", "probe", "verify",
                     "filter", "eliminate", "decontaminate", "derive", "explode"), LOCALITY_ROW),
    **dict.fromkeys(("dedup", "select", "curriculum", "strategy", "new_question", "report", "group", "pair", "join",
                     "union"), LOCALITY_GLOBAL),
}


class RowFailure(Exception):
    """Post-processing could not produce a row; the row is stored as failed with this reason."""


@dataclass
class RowContext:
    """What a row operator or a ``prepare`` hook may see besides its input rows.

    Attributes:
        round: the loop round (0 outside loops).
        params: the recipe's params.
        nodes: rows of other sources/steps by name, for options of kind ``node``
            (``against=pool``); each a list of row dicts.
        row_ids: the input rows' ids, in order.
        parent_ids: for each input row, the ids of its own parents (sibling
            samples of one LLM step share a parent).
        base_dir: the recipe's folder (relative data paths resolve against it).
        node_ids: row ids of the rows in ``nodes``, in the same order (relational steps name
            those rows as lineage parents with ``(node, j)`` indexes; see ops/relational.py).
        lineage: ``row_ids -> {row_id: parent ids}`` for those rows and all their ancestors,
            from the store (``join`` on common ancestry, ``pair``); ``None`` outside a run.
    """

    round: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    row_ids: list[str] = field(default_factory=list)
    parent_ids: list[tuple[str, ...]] = field(default_factory=list)
    base_dir: Path = Path(".")
    node_ids: dict[str, list[str]] = field(default_factory=dict)
    lineage: Callable[[list[str]], dict[str, tuple[str, ...]]] | None = None


@dataclass(frozen=True)
class Option:
    """One operator option.

    Attributes:
        name: the keyword in the recipe (``model=``, ``n=``).
        kind: one of the ``KIND_*`` constants.
        default: value used when the recipe omits it.
        choices: allowed values for ``choice`` options.
        doc: one line for ``docs/operators.md``.
        post: ``True`` when the option only affects post-processing (it
            changes the step fingerprint but never a call key).
        range: ``(low, high)`` bounds, inclusive, for ``int``/``float`` options;
            ``None`` for an open side (see :func:`range_problem`).
    """

    name: str
    kind: str
    default: Any = None
    choices: tuple[Any, ...] = ()
    doc: str = ""
    post: bool = False
    range: tuple[float | None, float | None] | None = None


@dataclass(frozen=True)
class OutputField:
    """A field an operator adds to each output row."""

    name: str
    type: str
    doc: str = ""


MAX_SAMPLES = 1024
"""The most samples (calls, output rows) one input row may ask for: ``n`` and ``n_from`` (a recipe is untrusted
input, and ``n=10**9`` would queue a billion calls; rejection-sampling papers use at most a few hundred)."""

SAMPLING_RANGES: dict[str, tuple[float | None, float | None]] = {
    "temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "max_tokens": (1, None), "top_k": (-1, None),
    "min_p": (0.0, 1.0), "presence_penalty": (-2.0, 2.0), "frequency_penalty": (-2.0, 2.0),
    "repetition_penalty": (0.0, None), "seed": (0, 2**63 - 1), "n": (1, MAX_SAMPLES),
}
"""Valid ranges (inclusive) of sampling params, in a ``model`` declaration or as step options
(the OpenAI API's ranges; vLLM and llama.cpp accept the same)."""


def range_problem(name: str, value: Any, bounds: tuple[float | None, float | None] | None) -> str | None:
    """Why ``value`` is outside ``bounds`` (``"n must be at least 1, not 0"``), or ``None``.

    Non-numbers (and ``None``) are not range-checked here; type errors are the checker's.
    """
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    lo, hi = bounds
    if lo is not None and hi is not None and not lo <= value <= hi:
        return f"{name} must be between {lo:g} and {hi:g}, not {value:g}"
    if lo is not None and value < lo:
        return f"{name} must be at least {lo:g}, not {value:g}"
    if hi is not None and value > hi:
        return f"{name} must be at most {hi:g}, not {value:g}"
    return None


SAMPLING_OPTIONS = (
    Option("temperature", KIND_FLOAT, doc="override the model's temperature for this step",
           range=SAMPLING_RANGES["temperature"]),
    Option("top_p", KIND_FLOAT, doc="override top_p", range=SAMPLING_RANGES["top_p"]),
    Option("max_tokens", KIND_INT, doc="override max_tokens (tokens)", range=SAMPLING_RANGES["max_tokens"]),
    Option("seed", KIND_INT, doc="fixed sampling seed; default: derived from the call key", range=SAMPLING_RANGES["seed"]),
)

# Choices shared by several operators.
EXTRACT_MODES = ("number", "boxed", "choice", "yesno", "text")
VERIFY_MODES = ("gold", "majority", "llm")

LLM_OPTIONS = (
    Option("model", KIND_MODEL, doc="the model that answers (default: the first declared model)"),
    Option("prompt", KIND_TEMPLATE, doc="the user prompt template (default: the operator's own)"),
    Option("system", KIND_TEMPLATE, doc="an optional system prompt template"),
    Option("n", KIND_INT, 1, doc="samples per input row; each sample is one call and one row", range=(1, MAX_SAMPLES)),
    Option("on_truncation", KIND_CHOICE, "fail", choices=("fail", "keep"), post=True,
           doc="a reply cut at max_tokens: fail the row (default) or keep it (the row gets __truncated__ for postprocess)"),
) + SAMPLING_OPTIONS


@dataclass(frozen=True)
class Operator:
    """An operator's static description plus its implementation hooks.

    Attributes:
        name: the name used in recipes.
        doc: what it does.
        source: the paper or doc it follows.
        options: its options, by name.
        outputs: the fields it adds, in order (renamable with ``->``).
        uses_model: ``True`` for LLM operators.
        default_prompt: file name under ``ops/templates`` of the default prompt.
        postprocess: ``(row, text, opts) -> {output: value}`` for LLM operators;
            pure; raises :class:`RowFailure`.
        apply: ``(rows, opts) -> [(parent_indexes, new_fields)]`` for row
            operators; pure.
        prompt_vars: ``(row, opts) -> extra template variables``.
        prepare: ``(rows, opts, ctx) -> [extra template variables per row]`` for
            LLM operators that need the whole input (few-shot examples drawn
            from the pool, a budget split over seeds). The key ``__n__`` in a
            row's dict overrides that row's sample count; ``__schema__`` sets its JSON schema.
        json_schema: ``opts -> JSON schema | None``; the reply must follow it.
        logprobs: ``opts -> top-k | None``; ask the engine for token logprobs,
            handed to ``postprocess`` as its fourth argument when set.
        takes_context: ``apply`` takes a third argument, a :class:`RowContext`.
        inherit: output rows keep their parent's fields (``False``: only the
            operator's outputs, e.g. a brand-new question or a per-class report).
        select: ``opts -> Operator``; picks the implementation from the options
            (``verify(mode="llm")`` is an LLM operator, the other modes are not).
        template_vars: variables its ``prompt_vars``/``prepare`` add, beyond
            ``input``; the checker accepts them in prompts.
        resolve: ``(opts, field_types, producer) -> opts``, run by the checker
            once the options are complete: fixes options that depend on the
            graph (``verify``'s answer type from the extract mode of the step
            that made its field). ``producer(field)`` gives that step's options
            or ``None``.
        locality: what one output row depends on, for the streaming scheduler:
            ``row`` (its own input row: streamed batch by batch), ``group`` (the
            samples of one parent: streamed by whole groups) or ``global`` (the whole
            input: a barrier for its own subgraph). Empty: looked up by name in
            :data:`LOCALITY` (``global`` when not listed, the safe choice).
    """

    name: str
    doc: str
    source: str
    options: dict[str, Option]
    outputs: tuple[OutputField, ...]
    uses_model: bool
    default_prompt: str | None = None
    postprocess: Callable[..., dict[str, Any]] | None = None
    apply: Callable[..., list[tuple[tuple[Any, ...], dict[str, Any]]]] | None = None
    prompt_vars: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    prepare: Callable[..., list[dict[str, Any]]] | None = None
    json_schema: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    logprobs: Callable[[dict[str, Any]], int | None] | None = None
    takes_context: bool = False
    inherit: bool = True
    select: Callable[[dict[str, Any]], Operator] | None = None
    template_vars: tuple[str, ...] = ()
    resolve: Callable[[dict[str, Any], dict[str, str], Callable[[str], dict[str, Any] | None]], dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    locality_: str = ""

    @property
    def locality(self) -> str:
        """``row``, ``group`` or ``global`` (see the class docstring)."""
        if self.locality_:
            return self.locality_
        if self.name == "verify" and not self.uses_model and self.apply is not None and self.takes_context:
            return LOCALITY_GROUP   # the majority vote over one parent's samples
        return LOCALITY.get(self.name, LOCALITY_GLOBAL)

    def missing_inputs(self, opts: dict[str, Any]) -> list[tuple[str, str, str]]:
        """What this operator (in the mode ``opts`` selected) needs but ``opts`` lacks, for ``synth check``.

        Each problem is ``(option, message, hint)``; the checker reports it at the option (or the call) with
        code ``missing-option``. Operators list their checks in ``extra["requires"]``, a function of the
        options (issue 12: ``judge(mode="pairwise")`` without ``response_b`` used to rate one response).
        """
        fn = self.extra.get("requires")
        return list(fn(opts)) if fn is not None else []

    def wants_logprobs(self, opts: dict[str, Any]) -> int | None:
        """Top-k logprobs to request for a step with these options, or ``None``."""
        return self.logprobs(opts) if self.logprobs else None

    def post(self, row: dict[str, Any], text: str, opts: dict[str, Any], logprobs: list[float] | None = None) -> dict[str, Any]:
        """Run :attr:`postprocess`, passing logprobs to operators that asked for them."""
        assert self.postprocess is not None
        if self.logprobs is not None:
            return self.postprocess(row, text, opts, logprobs)  # type: ignore[call-arg]
        return self.postprocess(row, text, opts)

    def run_apply(self, rows: Sequence[dict[str, Any]], opts: dict[str, Any],
                  ctx: RowContext | None = None) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """Run :attr:`apply`, passing the context to operators that take it."""
        assert self.apply is not None
        if self.takes_context:
            return self.apply(rows, opts, ctx or RowContext())  # type: ignore[call-arg]
        return self.apply(rows, opts)

    def default_prompt_text(self) -> str | None:
        if self.default_prompt is None:
            return None
        return (TEMPLATE_DIR / self.default_prompt).read_text(encoding="utf-8")


def options(*opts: Option) -> dict[str, Option]:
    """Options by name, in declaration order."""
    return {o.name: o for o in opts}
