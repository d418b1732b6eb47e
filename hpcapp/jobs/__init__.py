"""Orchestration: options, planning on rank 0, running a job, provenance, hpcapp.run."""
