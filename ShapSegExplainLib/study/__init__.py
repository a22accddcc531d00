"""Studies: many explanations (cases × settings) on a Dask cluster, resumable, with a report."""
