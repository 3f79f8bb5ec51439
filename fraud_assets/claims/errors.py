"""The errors a mapping or a source file raises; shared by ``mapping`` and ``transforms``."""


class MappingError(ValueError):
    """The mapping file itself is wrong: unknown keys, impossible rules, a missing file."""


class SourceError(ValueError):
    """A source file cannot be ingested at all: unreadable, empty, or lacking columns."""


class EmptySourceError(SourceError):
    """The file has no header and no records (zero bytes or blank lines only)."""
