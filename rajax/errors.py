"""Errors that the command line reports as one line, without a traceback."""


class RajaxError(Exception):
    """A problem with the user's input (file, option, data) rather than a bug in rajax.

    The message must say what is wrong and name the file or option involved; the CLI
    prints it as ``rajax COMMAND: error: <message>`` and exits with status 2.
    """


class VideoError(RajaxError):
    """A video (or frame array) cannot be read or does not have what is needed."""


class WeightsError(RajaxError):
    """A weight file cannot be converted or loaded."""
