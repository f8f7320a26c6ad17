"""From store to training: export shapes, lineage-safe splits, dataset cards, run stats and the HTML report.

See README.md in this folder.
"""
