"""The embedded demo: a seeded phantom CT (``phantom``), the case and job built on it
(``demo_case``), and the demo nnU-Net model shipped as package data (``model/``).

Only the model's path lives here, so the torch-free panel can list the demo model without
importing SimpleITK or scipy."""
from pathlib import Path

DEMO_MODEL = Path(__file__).resolve().parent / "model"
