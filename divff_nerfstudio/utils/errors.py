"""The one base class of failures a user can act on (weights to provide, a disk to free, a checkpoint
to replace): the `divff-*` commands print their message as one line instead of a traceback."""


class UserError(Exception):
    """A failure whose message names the file or setting and what to do about it."""
