"""``report.png`` of a result, drawn from its output files (``shapseg report OUT``)."""
