"""Errors that the CLI turns into one clear line (the message says what went wrong and how to fix it)."""


class AvatarToolError(Exception):
    """Base class for user-facing errors."""


class EngineError(AvatarToolError):
    """An engine failed. ``engine`` names it; ``index``/``vector`` name the avatar vector involved, if any."""

    def __init__(self, message: str, engine: str | None = None, index: int | None = None, vector: dict | None = None):
        self.detail = message
        self.engine = engine
        self.index = index
        self.vector = vector
        parts = []
        if engine:
            parts.append(f"engine '{engine}'")
        if index is not None:
            parts.append(f"vector #{index}")
        prefix = (", ".join(parts) + ": ") if parts else ""
        suffix = f" (vector: {vector})" if vector is not None else ""
        super().__init__(prefix + message + suffix)


class EngineNotFound(AvatarToolError):
    pass


class LabelLeakError(AvatarToolError):
    """A labelled evaluation set was about to be used as training data."""
