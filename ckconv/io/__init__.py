"""The core I/O layer: bytes from file to file, checksums, and atomic output.

``streaming`` moves tensor bytes (kernel copy plus checksums on a second thread),
``preallocate`` reserves output blocks, ``checksums`` holds CRC-32C, CRC-32 and their
combination, ``atomic`` writes under temporary names and renames at the end. Nothing here
knows a checkpoint format.
"""
