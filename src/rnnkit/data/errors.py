"""The one exception type of the data layer.

Every problem with user-supplied data (a missing or empty file, bytes that are not
UTF-8, parallel files of different lengths, a malformed TSV line, a bad vocabulary
file) raises :class:`DataError` with a single-line message that names the file and,
where it helps, the line: ``train.de:17: invalid UTF-8``. The CLI prints the message
as is, so it must read well without a traceback.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message is one line: ``<file>[:<line>]: <what is wrong>``."""
