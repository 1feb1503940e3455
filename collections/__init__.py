"""pinlanding.collections: the orchestration (CLI, run layout, catalogue ingestion) and the shared core."""
