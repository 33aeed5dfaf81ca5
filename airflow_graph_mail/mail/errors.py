"""Errors for messages that cannot be sent as given, raised before any request."""


class MessageValidationError(ValueError):
    """A message field is wrong; ``field`` names it so the caller knows what to fix."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
