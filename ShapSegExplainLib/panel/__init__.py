"""What the Slicer panel imports, torch-free: run requests, the worker process and its events, result views, dependencies and the model list."""
