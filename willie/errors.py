"""The one exception type a user sees: the CLI prints its message and exits non-zero."""


class WillieError(Exception):
    """An error the user can act on (bad params, a bad video, an unreachable server).

    The message says what is wrong, with which key, file or URL, and what to try instead.
    The CLI prints it without a traceback and exits with status 1.
    """


class StopRequested(WillieError):
    """SIGTERM or Ctrl-C stopped training at a step boundary after writing a checkpoint; the
    run resumes from it. The CLI exits with the shell's code for the signal (130, 143)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
