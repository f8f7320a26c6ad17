"""Parsing ``.synth`` text into :mod:`synthlang.ast` nodes (Lark lives only here)."""

from synthlang.syntax.parser import parse, parse_expr, parse_file, parse_model_decl

__all__ = ["parse", "parse_expr", "parse_file", "parse_model_decl"]
