"""Trial storage: SQLite (default), PostgreSQL, or in memory, through SQLAlchemy Core."""

from frameworm_lightning.storage._sql import DuplicateClaimError, Storage, StudyRecord, current_owner, open_storage

__all__ = ["DuplicateClaimError", "Storage", "StudyRecord", "current_owner", "open_storage"]
