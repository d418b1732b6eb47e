"""The MPI runtime: the engine, the reduction tree, schedules, stop notices, progress."""
