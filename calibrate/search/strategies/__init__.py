"""The built-in allocation strategies, one file each (`greedy`, `knapsack`, `revert`).

Every module in this folder is imported with the search, and each registers its `Strategy` in
`calibrate.search.strategy.STRATEGIES`: adding a strategy is adding a file here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
