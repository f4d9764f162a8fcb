"""Trial storage: SQLite (default), PostgreSQL, or in memory, through SQLAlchemy Core."""

from frameworm_lightning.storage._sql import (
    MAX_NAME_LENGTH,
    MAX_PROCESS_DEATHS,
    DuplicateClaimError,
    Storage,
    StudyRecord,
    TrialHistory,
    current_owner,
    open_storage,
    read_storage,
)
from frameworm_lightning.storage._url import masked_url

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_PROCESS_DEATHS",
    "DuplicateClaimError",
    "Storage",
    "StudyRecord",
    "TrialHistory",
    "current_owner",
    "masked_url",
    "open_storage",
    "read_storage",
]
