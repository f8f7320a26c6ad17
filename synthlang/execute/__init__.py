"""Running programs: sources, the scheduler/runner, exports."""
