"""Every point-to-point message tag hpcapp uses, in one place and all distinct.

hpcapp sends only on communicators of its own: :func:`hpcapp.jobs.app.execute` works on a
duplicate of the caller's communicator, and the stop notice, the block server and the progress
display each duplicate that again. So no tag here can match a caller's message; distinct tags
keep hpcapp's own protocols apart where two share a communicator (the engine's: the reduction,
the scattered chunks and the per-row outputs). MPI guarantees tags up to 32767.
"""

from __future__ import annotations

from typing import Final


class Tag:
    """The tag of each kind of message; the name says which protocol and which message.

    Plain ints, not an IntEnum: they are passed on every probe of a polling loop, where an
    enum member costs a few hundred nanoseconds more per call.
    """

    REDUCE_META: Final = 7101  # tree reduction: a rank's node list (pickled) to its parent
    REDUCE_DATA: Final = 7102  # ... and the nodes' arrays, one raw buffer
    SCATTER_CHUNK: Final = 7201  # --distribute scatter: rank 0 sends a chunk's bytes
    BLOCK_ASK: Final = 7301  # --schedule dynamic: a rank asks rank 0 for its next block
    BLOCK_ANSWER: Final = 7302  # ... and rank 0's answer, the block number
    ROWS_META: Final = 7401  # per-row outputs through rank 0: where the rows go (pickled)
    ROWS_DATA: Final = 7402  # ... and the rows, one raw buffer
    PROGRESS: Final = 7501  # a rank's running totals to rank 0's progress display
    STOP: Final = 7601  # a failed rank asks the others to stop taking chunks
    RESULT: Final = 7701  # hpcapp.run(root=r): the results from rank 0 to rank r


def all_tags() -> dict[str, int]:
    """Return every tag by name."""
    return {name: value for name, value in vars(Tag).items() if name.isupper()}
