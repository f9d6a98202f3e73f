"""The one exception type a user sees: the CLI prints its message and exits non-zero."""


class WillieError(Exception):
    """An error the user can act on (bad params, a bad video, an unreachable server).

    The message says what is wrong, with which key, file or URL, and what to try instead.
    The CLI prints it without a traceback and exits with status 1.
    """
