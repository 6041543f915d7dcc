"""``python -m truthprune.testing NAME [NAME ...]``: run the contract tests of installed plugins.

Prints one line per passed check; on the first failure prints it and exits 1.
"""

from __future__ import annotations

import sys
from .checks import ContractFailure, check_plugin
from ..errors import PluginContractError, UserError


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    for name in argv:
        try:
            for line in check_plugin(name):
                print(f"ok    {line}")
        except (ContractFailure, PluginContractError, UserError) as err:
            print(f"FAIL  {name}: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
