"""Registers the built-in commands on the app. Each lives in its own module."""

from . import plugins_cmd  # noqa: F401
from . import run_cmd  # noqa: F401
from . import prune_cmd  # noqa: F401
from . import allocate_cmd  # noqa: F401
from . import eval_cmd  # noqa: F401
from . import truthfulness_cmd  # noqa: F401  (adds `eval truthfulness`)
from . import probe_cmd  # noqa: F401
from . import report_cmd  # noqa: F401
from . import sweep_cmd  # noqa: F401
from . import inspect_cmd  # noqa: F401
from . import export_cmd  # noqa: F401
