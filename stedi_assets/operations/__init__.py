"""Jobs and schedules that operate the lakehouse, beside the assets that fill it."""
