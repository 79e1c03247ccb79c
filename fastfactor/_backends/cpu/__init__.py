"""The CPU backend (see ``_step``)."""

from ._step import *  # noqa: F401,F403
from ._step import _factored_chunks  # noqa: F401

