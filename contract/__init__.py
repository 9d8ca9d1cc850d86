"""The shared contract between the sync Lambda and the runtime workers.

Pure code only (no I/O): registry items -> validated model specs, the request a spec builds,
the stream a spec decodes, and the SSM snapshot both sides agree on.
"""

from contract.errors import Problem, SpecError
from contract.spec import ModelSpec, parse_model_item

__all__ = ["ModelSpec", "Problem", "SpecError", "parse_model_item"]
