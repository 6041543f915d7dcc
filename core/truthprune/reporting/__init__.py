"""What a finished run says: report.json/report.md rendering and schema, plots, comparisons of several runs."""
