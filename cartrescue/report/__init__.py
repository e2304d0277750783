"""``cartrescue report``: what the reminders won back, and how much of that they really caused.

One module per job: :mod:`~cartrescue.report.attribution` (orders to messages, in a scratch
SQLite file), :mod:`~cartrescue.report.stats` (intervals and probabilities),
:mod:`~cartrescue.report.analysis` (the document), :mod:`~cartrescue.report.build` (wiring),
and the outputs: :mod:`~cartrescue.report.terminal`, :mod:`~cartrescue.report.files` (JSON and
CSV), :mod:`~cartrescue.report.html` (one self-contained page with inline SVG) and
:mod:`~cartrescue.report.mail` (the weekly digest). docs/reporting.md explains every number.
"""
