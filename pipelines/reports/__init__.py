"""Reports: the analysts' HTML report (`explain`), the monitor's report and the capture-at-capacity section, each
rendered from a Jinja2 template in `templates/`."""

from leadscore.pipelines.reports.analyst import Review, build_report, load_review
from leadscore.pipelines.reports.monitor import summary_lines, write_report

__all__ = ["Review", "build_report", "load_review", "summary_lines", "write_report"]
