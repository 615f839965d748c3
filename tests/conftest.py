import os

import pytest
import torch

# Two cores are shared by everything on the project's machines; tests compare numbers, so one thread keeps them
# deterministic and leaves the other core to the rest.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def official_encodec():
    from testkit.oracles import official_encodec as load

    return load()


@pytest.fixture
def hf_encodec():
    from testkit.oracles import hf_encodec as load

    return load()
