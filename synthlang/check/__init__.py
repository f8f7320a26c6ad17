"""The checker: all semantic errors at once, sorted by position."""

from synthlang.check.checker import check, did_you_mean

__all__ = ["check", "did_you_mean"]
