"""synthlang: a declarative language for distillation datasets.

The Python API behind every CLI verb::

    import synthlang
    program = synthlang.check_file("recipes/quickstart.synth")
    summary = synthlang.run(program, db=".synth/synth.duckdb")
"""

from __future__ import annotations

__version__ = "0.1.0"

from synthlang.api import check_file, parse, parse_file, plan, run  # noqa: E402

__all__ = ["__version__", "check_file", "parse", "parse_file", "plan", "run"]
