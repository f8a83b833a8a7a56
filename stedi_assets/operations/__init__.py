"""Jobs, schedules, sensors, alerts and audit checks that operate the lakehouse, beside the assets that fill it."""
