"""The HTML report of a run: leaderboard, plots and a sample gallery in one self-contained file."""

from harness.publish.report.render import render_report

__all__ = ["render_report"]
