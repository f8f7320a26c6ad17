"""The dataset card: a README.md with YAML front matter, written with ``huggingface_hub``'s ``DatasetCard``
(https://huggingface.co/docs/hub/datasets-cards) beside every Hugging Face export and push.

It says what made the data: the licence taken from the sources (a source's ``license=``/``citation=``
options, or the ``License:``/``Citation:`` lines of a ``SOURCE.md`` beside its data file, as the
shipped recipes/data have), the recipe text, run id, models with their sampling, params, the funnel
per step (rows in, out, failed and why), tokens and cost, the methods with their papers, the split
and how to reproduce it. It never holds a token or a key: nothing from the environment is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LICENSES = (   # licence text in a SOURCE.md or a license= option -> the Hub's licence id
    (r"\bMIT\b", "mit"), (r"Apache[- ]?(License,? )?(Version )?2(\.0)?", "apache-2.0"),
    (r"Creative Commons Attribution 4\.0|CC[- ]BY[- ]4\.0", "cc-by-4.0"),
    (r"Creative Commons Attribution[- ]ShareAlike 4\.0|CC[- ]BY[- ]SA[- ]4\.0", "cc-by-sa-4.0"),
    (r"CC0|Public Domain", "cc0-1.0"), (r"BSD[- ]3", "bsd-3-clause"), (r"\bGPL[- ]?3", "gpl-3.0"),
)


def license_id(text: str) -> str:
    """The Hub licence id for a licence name (``"MIT (Copyright ...)"`` -> ``"mit"``); ``other`` when unknown."""
    t = text.strip()
    if re.fullmatch(r"[a-z0-9.\-]+", t):
        return t
    for pat, lid in _LICENSES:
        if re.search(pat, t, re.I):
            return lid
    return "other"


def source_licenses(program: Any) -> list[dict[str, str | None]]:
    """Each source's licence and citation: its ``license=``/``citation=`` options, else its data folder's SOURCE.md."""
    out = []
    for s in (program.sources.values() if program else []):
        lic, cite, where = s.args.get("license"), s.args.get("citation"), "recipe"
        if (lic is None or cite is None) and s.path is not None:
            for folder in (Path(s.path).parent, Path(s.path).parent.parent):
                doc = folder / "SOURCE.md"
                if doc.is_file():
                    text = doc.read_text(encoding="utf-8", errors="replace")
                    m = re.search(r"^\s*-?\s*Licen[cs]e:\s*(.+)$", text, re.M | re.I)
                    c = re.search(r"^\s*-?\s*Citation:\s*(.+)$", text, re.M | re.I)
                    if lic is None and m:
                        lic, where = m.group(1).strip(), str(doc)
                    if cite is None and c:
                        cite = c.group(1).strip()
                    break
        out.append({"source": s.name, "license": lic, "license_id": license_id(lic) if lic else None,
                    "citation": cite, "declared_in": where if lic else None})
    return out


def _size_category(n: int) -> str:
    for lim, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < lim:
            return name
    return "1M<n<10M"


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def card_text(store: Any, res: Any, info: Any, program: Any) -> tuple[str, list[str]]:
    """The card's Markdown (with YAML front matter) and warnings (licences missing or disagreeing).

    Args:
        store: the open store.
        res: the :class:`synthlang.execute.export.ExportResult` being written.
        info: the run's :class:`synthlang.outputs.read.RunInfo`.
        program: the checked program, or ``None``.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from synthlang.outputs.runstats import run_stats
    from synthlang.outputs.shapes import PLAIN, mapping_summary

    warnings: list[str] = []
    lic = source_licenses(program)
    ids = sorted({x["license_id"] for x in lic if x["license_id"]})
    undeclared = [x["source"] for x in lic if not x["license"]]
    if res.options.get("license"):
        license_ = license_id(res.options["license"])
    elif len(ids) == 1 and not undeclared:
        license_ = ids[0]
    else:
        license_ = "other" if ids else "unknown"
    if undeclared:
        warnings.append(f"no licence declared for source {', '.join(undeclared)} (add license=\"...\" to the source); "
                        f"the card says '{license_}'")
    if len(ids) > 1:
        warnings.append(f"the sources' licences disagree ({', '.join(ids)}); the card says '{license_}': check that "
                        "the combination may be shared")
    stats = run_stats(store, info.run_id, program)
    fmt = res.format
    tasks = ["text-generation"] + (["question-answering"] if fmt in PLAIN else [])
    tags = ["synthetic", "synthlang", "distillation", fmt] + (["dpo"] if fmt == "preference" else [])
    data = DatasetCardData(license=license_, task_categories=tasks, size_categories=[_size_category(res.rows)],
                           tags=tags, pretty_name=info.recipe, language=["en"])
    recipe_text = ""
    if info.recipe_path and Path(info.recipe_path).is_file():
        recipe_text = Path(info.recipe_path).read_text(encoding="utf-8", errors="replace")
    desc = (program.description if program is not None else None) or ""
    lines = [f"# {info.recipe}", "", desc, "",
             f"Synthetic data made by [synthlang](https://pypi.org/project/synthlang/) from the recipe `{info.recipe}` "
             f"(run `{info.run_id}`, " + ("exported at the end of the run" if res.in_run else f"status **{info.status}**")
             + "). This card was written by synthlang from the run's store.",
             "", "## Contents", "",
             f"- step exported: `{res.step}` as **{fmt}** ({mapping_summary(fmt, res.options)})",
             f"- examples: {res.rows} (from {res.source_rows} rows)"]
    if res.splits:
        lines.append("- splits, grouped by seed ancestor so that no seed's rephrasings, answers or samples land in two "
                     "splits" + (f", stratified by `{res.options['stratify']}`" if res.options.get("stratify") else "") + ":")
        lines += [f"  - `{k}`: {n} examples from {g} seed groups" for k, (g, n) in res.splits.items()]
    lines += [f"- {n}" for n in res.notes]
    lines += ["", "## Sources and licence", "", "| source | licence | citation | declared in |", "|---|---|---|---|"]
    lines += [f"| {_cell(x['source'])} | {_cell(x['license'] or 'not declared')} | {_cell(x['citation'] or '')} | "
              f"{_cell(x['declared_in'] or '')} |" for x in lic]
    lines += ["", "## Models", "", "| model | engine | model id | sampling | USD / Mtok in/out |", "|---|---|---|---|---|"]
    for name, m in stats.models.items():
        samp = ", ".join(f"{k}={v}" for k, v in m["sampling"].items())
        price = "/".join(f"${p:g}" for p in m["price_per_mtok"]) if m["price_per_mtok"] else ""
        lines.append(f"| {_cell(name)} | {_cell(m['engine'])} | {_cell(m['model_id'])} | {_cell(samp)} | {price} |")
    if info.params:
        lines += ["", "## Params", "", "| param | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in info.params.items()]
    lines += ["", "## Funnel", "", "Rows per step as the store counts them (`synth show " + info.run_id + "`).", "",
              "| step | operator | rows in | rows out | failed | dropped | failure reasons | calls made | tokens | USD |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for f in stats.steps:
        reasons = "; ".join(f"{k}: {v}" for k, v in sorted(f.reasons.items(), key=lambda kv: -kv[1]))
        rows_in = "" if f.rows_in is None or f.operator == "source" else f.rows_in
        lines.append(f"| {_cell(f.label)} | {f.operator} | {rows_in} | {f.rows_out} | "
                     f"{f.failed} | {'' if f.dropped is None else f.dropped} | {_cell(reasons)} | {f.calls_made} | "
                     f"{f.prompt_tokens + f.completion_tokens} | {'' if f.usd is None else f'${f.usd:.4f}'} |")
    usd = stats.usd
    lines += ["", f"Total: {stats.calls_made} calls made, {stats.tokens} tokens"
              + (f", ${usd:.4f}" if usd is not None else ", cost unknown (no price declared)") + "."]
    methods = _methods(program)
    if methods:
        lines += ["", "## Methods", ""] + [f"- `{op}`: {cite}" for op, cite in methods]
    if recipe_text:
        lines += ["", "## Recipe", "", f"`{Path(info.recipe_path or '').name}`:", "", _fence(recipe_text, "")]
    params = " ".join(f"--param {k}={v}" for k, v in info.params.items())
    cmd = f"synth run {Path(info.recipe_path or info.recipe + '.synth').name}" + (f" {params}" if params else "")
    lines += ["", "## Reproduce", "", "With the recipe bundle (the recipe, its imports and templates) and its data:", "",
              _fence(f"pip install synthlang\n{cmd}\nsynth export {res.step} --format {fmt}"
                     + (f" --split {','.join(f'{k}={v:g}' for k, v in res.options['split'].items())}" if res.options.get("split") else "")
                     + " --to out/" + res.step, "bash"),
              "", "Every call is cached by a content hash of everything that decides its output, so a re-run on the same "
              "store re-issues no finished call."]
    cites = [x["citation"] for x in lic if x["citation"]]
    if cites:
        lines += ["", "## Citation of the source data", ""] + [f"- {c}" for c in cites]
    card = DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n", body="\n".join(lines))
    return str(card.content), warnings


def _methods(program: Any) -> list[tuple[str, str]]:
    out: dict[str, str] = {}
    for st in (program.steps + [b for lp in program.loops for b in lp.steps]) if program else []:
        src = getattr(st.op, "source", "") or ""
        if src and src != "—":
            out.setdefault(st.op.name, src)
    return sorted(out.items())


def write_card(store: Any, res: Any, info: Any, program: Any, root: Path | None = None) -> Path:
    """Write ``README.md`` into the export folder ``res.path``; its warnings go to ``res.warnings``.

    Raises:
        ConfigError: the folder leads outside ``root``.
    """
    from synthlang.execute.export import _atomic_file

    text, warnings = card_text(store, res, info, program)
    res.warnings.extend(warnings)
    path = Path(res.path) / "README.md"
    _atomic_file(path, root, lambda f: f.write(text))
    return path
