"""``synth push STEP --repo ORG/NAME`` and ``push_to_hub=`` on an export: a dataset repository on the Hugging Face Hub.

The repository gets (https://huggingface.co/docs/hub/datasets-manual-configuration):

- the data as Parquet shards, ``data/<split>-00000-of-00001.parquet``, declared under ``configs`` in the card's YAML
  so that ``load_dataset("ORG/NAME")`` finds the splits;
- the dataset card ``README.md`` (:mod:`synthlang.outputs.card`);
- the **recipe bundle** under ``recipe/``: the recipe, the recipes it imports, its template files and its source
  data files, at their paths relative to the project, so that a downloaded copy re-creates the run with
  ``synth run recipe/<recipe>.synth`` (same call keys: they hash only what decides each call's output).

The upload uses ``huggingface_hub`` (``HfApi.create_repo`` then ``HfApi.upload_folder``). The token comes from
``HF_TOKEN`` or the login that ``hf auth login`` saved; synthlang never reads, stores or writes it, and nothing
from the environment goes into the card or the bundle. ``HF_ENDPOINT`` points the client at another Hub.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthlang.errors import ConfigError


@dataclass
class PushResult:
    """What was pushed: the repository URL, the files (paths in the repo) and the export behind them."""

    repo_id: str
    url: str
    files: list[str] = field(default_factory=list)
    export: Any = None


def bundle_files(recipe_path: Path) -> tuple[Path, list[Path]]:
    """The recipe's bundle: ``(root, files)``, with every file under ``root`` (the project directory).

    Follows ``use`` imports recursively; collects ``template NAME = file(...)`` files and the path argument of
    ``jsonl``/``csv``/``parquet``/``hf`` sources (a folder for ``hf``: all its files).

    Raises:
        ConfigError: a referenced file outside the project directory.
    """
    from synthlang import ast
    from synthlang.check.checker import project_root
    from synthlang.syntax import parse_file

    recipe_path = recipe_path.resolve()
    root = project_root(recipe_path.parent)
    seen: list[Path] = []

    def add(p: Path) -> None:
        p = p.resolve()
        if not p.is_relative_to(root):
            raise ConfigError(f"the recipe bundle would include {p}, outside the project directory {root}")
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file() and q not in seen:
                    seen.append(q)
        elif p.is_file() and p not in seen:
            seen.append(p)

    def walk(path: Path) -> None:
        if path in seen:
            return
        add(path)
        for d in parse_file(path).decls:
            if isinstance(d, ast.Use):
                walk((path.parent / d.path).resolve())
            elif isinstance(d, ast.Template) and d.file:
                add(path.parent / d.file)
            elif isinstance(d, ast.Source) and d.loader.func in ("jsonl", "csv", "parquet", "hf"):
                first = d.loader.positional[:1]
                if first and isinstance(first[0], ast.Literal) and isinstance(first[0].value, str):
                    add(path.parent / first[0].value)
                    doc = (path.parent / first[0].value).parent / "SOURCE.md"
                    if doc.is_file():
                        add(doc)

    walk(recipe_path)
    return root, seen


def push(store: Any, step: str, repo_id: str, fmt: str = "hf", options: dict[str, Any] | None = None, *,
         run_id: str | None = None, program: Any = None, private: bool | None = None, in_run: bool = False) -> PushResult:
    """Export ``step`` and upload it, its card and the recipe bundle to the dataset repository ``repo_id``.

    Args:
        store: the open store.
        step: a step, source, loop or pool.
        repo_id: ``ORG/NAME``.
        fmt: the export format (``hf`` = the rows as they are, or a training format).
        options: export options (``split``, parts, ...).
        run_id: the run (default: the latest that made the step).
        program: the checked program (``None``: rebuilt from the run's recipe file).
        private: create the repository private.
        in_run: called from a recipe's own run.

    Raises:
        ConfigError: a bad repository id, no token, the Hub refusing, or a bundle file outside the project.
    """
    import re

    from synthlang.execute.export import export_step
    from synthlang.outputs import read

    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", repo_id):
        raise ConfigError(f"--repo {repo_id!r}: expected ORG/NAME")
    stage = Path(tempfile.mkdtemp(prefix="synth-push-"))
    try:
        res = export_step(store, step, stage / "export", fmt, {**(options or {}), "card": True}, run_id=run_id,
                          program=program, in_run=in_run)
        info = read.run_info(store, res.run_id)
        repo = stage / "repo"
        (repo / "data").mkdir(parents=True)
        import datasets

        loaded = datasets.load_from_disk(str(stage / "export"))
        splits = loaded if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        for name, ds in splits.items():
            ds.to_parquet(str(repo / "data" / f"{name}-00000-of-00001.parquet"))
        card = (stage / "export" / "README.md").read_text(encoding="utf-8")
        configs = "configs:\n- config_name: default\n  data_files:\n" + "".join(
            f"  - split: {name}\n    path: data/{name}-*\n" for name in splits)
        card = card.replace("---\n", "---\n" + configs, 1)
        if info.recipe_path and Path(info.recipe_path).is_file():
            root, files = bundle_files(Path(info.recipe_path))
            for f in files:
                dest = repo / "recipe" / f.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
            rel = Path(info.recipe_path).resolve().relative_to(root)
            params = " ".join(f"--param {k}={v}" for k, v in info.params.items())
            card += ("\n## Recipe bundle\n\nThis repository holds the recipe, its imports, templates and source data "
                     f"under `recipe/`. After downloading it:\n\n```bash\nsynth run recipe/{rel.as_posix()}"
                     + (f" {params}" if params else "") + "\n```\n")
        (repo / "README.md").write_text(card, encoding="utf-8")
        url = _upload(repo, repo_id, private, f"synthlang: {step} of run {res.run_id}")
        files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
        return PushResult(repo_id, url, files, res)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _upload(folder: Path, repo_id: str, private: bool | None, message: str) -> str:
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError
    except ImportError:   # pragma: no cover - datasets depends on huggingface_hub
        raise ConfigError("synth push needs huggingface_hub: pip install huggingface_hub") from None
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset", commit_message=message)
    except LocalTokenNotFoundError:
        raise ConfigError("no Hugging Face token: set HF_TOKEN or run `hf auth login`") from None
    except HfHubHTTPError as exc:
        raise ConfigError(f"the Hub refused the push to {repo_id}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise ConfigError(f"cannot reach the Hub for {repo_id}: {exc}") from None
    return str(url)
