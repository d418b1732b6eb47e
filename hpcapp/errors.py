"""The exceptions hpcapp turns into exit codes."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class HpcappError(Exception):
    """An error with a message meant for the user (no traceback) and an exit code."""

    exit_code = EXIT_FAILURE


class UsageError(HpcappError):
    """A bad command line, configuration or input: nothing was computed (exit code 2)."""

    exit_code = EXIT_USAGE


class KernelError(HpcappError):
    """A kernel raised or returned something that cannot be combined (exit code 1)."""

    exit_code = EXIT_FAILURE


class WriteError(HpcappError):
    """Writing the output or the checkpoint failed (disk full, quota, I/O error): exit code 1.

    The work is done: the message says where its result is kept and how to write it.
    """

    exit_code = EXIT_FAILURE


EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: try again later (with --resume)


class InterruptError(HpcappError):
    """The job was asked to stop (SIGTERM, SIGUSR1, SIGINT); a checkpoint may allow resuming."""

    exit_code = EXIT_INTERRUPTED
