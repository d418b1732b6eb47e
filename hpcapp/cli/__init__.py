"""The commands: parsing ``argv`` and one module per command (show, slurm, submit, plot)."""
