"""``python -m frameworm_lightning.cli`` is ``frameworm-search``."""

from frameworm_lightning.cli import main

if __name__ == "__main__":
    main()
