"""One explanation: the job schema, the phases and events, the output files and report, the progress display and the worker."""
