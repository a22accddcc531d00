import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixtures.model_folder import ModelSpec, write_model_folder  # noqa: E402
from shared_data import TOTALSEG, needs_shared  # noqa: E402


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Small random-weight nnU-Net results folders, in nnU-Net's own format."""
    root = tmp_path_factory.mktemp("models")
    specs = {
        "one_fold": ModelSpec(patch_size=(16, 32, 32), spacing=(3.0, 1.5, 1.5), features=(4, 8, 16), seed=1),
        "two_folds": ModelSpec(patch_size=(16, 32, 32), spacing=(3.0, 1.5, 1.5), features=(4, 8, 16),
                               folds=(0, 1), seed=2),
        "aniso": ModelSpec(patch_size=(16, 32, 32), spacing=(4.0, 1.2, 1.2), features=(4, 8, 16),
                           transpose_forward=(0, 2, 1), seed=3),
    }
    return {name: write_model_folder(root / name, spec) for name, spec in specs.items()}


@pytest.fixture(scope="session")
def shared_ct():
    return needs_shared(TOTALSEG / "ct.nii.gz").parent
