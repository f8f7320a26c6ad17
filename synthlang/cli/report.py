"""``synth report [RUN] -o report.html``: a run's report as one self-contained HTML page (plotly inlined)."""

from __future__ import annotations

import argparse

from synthlang.cli.common import add_db, console, db_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default=None, help="run id or a unique prefix (default: the latest run)")
    p.add_argument("-o", "--out", default="report.html", metavar="PATH", help="the HTML file to write (default report.html)")
    add_db(p)


def main(args: argparse.Namespace) -> int:
    from synthlang.errors import ConfigError
    from synthlang.outputs.read import latest_run
    from synthlang.outputs.report import write_report
    from synthlang.store import Store

    with Store(db_path(args), read_only=True) as store:
        run = args.run or latest_run(store)
        if run is None:
            raise ConfigError(f"no runs in {store.path}")
        path = write_report(store, run, args.out)
    console.print(f"wrote {path} ({path.stat().st_size // 1024} KiB, self-contained: open it in a browser)", markup=False)
    return 0
