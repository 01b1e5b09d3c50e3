"""``nnctl init``: look at a data file (``inspection``) and write a commented starter spec that trains as
written (``template``): the spec is built as data, then serialised with one comment per key."""

from nnctl.starter.inspection import Facts, inspect_data
from nnctl.starter.template import starter_spec

__all__ = ["Facts", "inspect_data", "starter_spec"]
