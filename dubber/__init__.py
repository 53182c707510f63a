"""dubber: re-render the on-screen speaker's mouth to match a dubbed dialogue track."""

__version__ = "0.1.0"
