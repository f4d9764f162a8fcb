"""``frameworm-search``: a hyperparameter search configured like any LightningCLI app.

Run ``frameworm-search --help``; see ``docs/cli.md``.
"""

from frameworm_lightning.cli._cli import SearchCLI, SearchTrainer, main
from frameworm_lightning.cli._search_config import SearchConfig

__all__ = ["SearchCLI", "SearchConfig", "SearchTrainer", "main"]
