"""Every point-to-point message tag hpcapp uses, in one place and all distinct.

hpcapp sends only on communicators of its own: :func:`hpcapp.jobs.app.execute` works on a
duplicate of the caller's communicator, and the stop notice, the block server and the progress
display each duplicate that again. So no tag here can match a caller's message; distinct tags
keep hpcapp's own protocols apart where two share a communicator (the engine's: the reduction,
the scattered chunks and the per-row outputs). MPI guarantees tags up to 32767.
"""

from __future__ import annotations

import enum


@enum.unique  # a repeated value is an error at import, not a silent alias
class Tag(enum.IntEnum):
    """The tag of each kind of message; the name says which protocol and which message."""

    REDUCE_META = 7101  # tree reduction: a rank's node list (pickled) to its parent
    REDUCE_DATA = 7102  # ... and the nodes' arrays, one raw buffer
    SCATTER_CHUNK = 7201  # --distribute scatter: rank 0 sends a chunk's bytes
    BLOCK_ASK = 7301  # --schedule dynamic: a rank asks rank 0 for its next block
    BLOCK_ANSWER = 7302  # ... and rank 0's answer, the block number
    ROWS_META = 7401  # per-row outputs through rank 0: where the rows go (pickled)
    ROWS_DATA = 7402  # ... and the rows, one raw buffer
    PROGRESS = 7501  # a rank's running totals to rank 0's progress display
    STOP = 7601  # a failed rank asks the others to stop taking chunks
    RESULT = 7701  # hpcapp.run(root=r): the results from rank 0 to rank r
