"""The one exception type for problems a user can fix (bad files, bad options, bad configs)."""


class UserError(Exception):
    """A problem with the user's input; the CLI prints its message on one line and exits with 2."""
