"""``grounding demo``: render a fresh world, find its moments with the shipped model, rank it, write a report."""

from grounding.demo.run import DemoResult, DemoSettings, format_summary, run_demo

__all__ = ["DemoResult", "DemoSettings", "format_summary", "run_demo"]
