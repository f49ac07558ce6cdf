"""Pages for people: the demo's self-contained HTML report (:func:`write_demo_report`)."""

from grounding.report.page import write_demo_report

__all__ = ["write_demo_report"]
