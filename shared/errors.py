"""The one error every wire schema raises: field path -> messages."""


class SchemaError(ValueError):
    """Invalid wire data; `errors` maps a dotted field path to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
