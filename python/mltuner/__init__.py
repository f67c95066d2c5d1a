"""mltuner: make a Python training loop a worker of a job tuned by mltunerd.

Layers, lowest first:
  mltuner.client   Client: libmltuner (ctypes) with zero-copy numpy pulls/pushes
  mltuner.session  Session: join a job's coordinator and follow its tasks
  mltuner.pytorch  TorchWorker: an nn.Module trained as a worker (needs torch)
Nothing is compiled: the package loads libmltuner.so (see mltuner._lib for
where it looks; MLTUNER_LIB overrides).
"""

from .client import (BRANCH_EVAL, BRANCH_INIT, BRANCH_SNAPSHOT, BRANCH_TEST, BRANCH_TRAIN,
                     BranchStatus, Client, MltunerError, ServerStatus, Tunables, library_path)
from ._lib import LibraryNotFound

__all__ = [
    "BRANCH_EVAL", "BRANCH_INIT", "BRANCH_SNAPSHOT", "BRANCH_TEST", "BRANCH_TRAIN",
    "BranchStatus", "Client", "LibraryNotFound", "MltunerError", "ServerStatus", "Tunables",
    "library_path",
]
__version__ = "0.1.0"
