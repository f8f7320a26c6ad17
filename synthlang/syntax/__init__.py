"""The .synth syntax: Lark grammar, parser and transformer to AST nodes, and the formatter."""

from synthlang.syntax.parser import parse, parse_expr, parse_file, parse_with_comments

__all__ = ["parse", "parse_expr", "parse_file", "parse_with_comments"]
