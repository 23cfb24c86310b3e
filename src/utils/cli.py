"""The one ending every entry point shares: an expected error is one line on stderr, `<command> error: <what>`, and an
exit code (the error's `exit_code`: 2 for a model that does not fit its data, and for bad input or usage; 1 for the
rest), never a traceback. Unexpected errors keep their traceback: they are bugs to report."""
import sys
from typing import Callable, Tuple, Type, TypeVar

T = TypeVar("T")


def fail(command: str, exc: BaseException, code: int = 1) -> None:
    """Print `<command> error: <exc>` (the project's messages are one line) and exit with the error's exit_code,
    else `code`."""
    sys.stderr.write(f"{command} error: {exc}\n")
    sys.exit(getattr(exc, "exit_code", code))


def run_or_exit(command: str, body: Callable[[], T], errors: Tuple[Type[BaseException], ...], code: int = 1) -> T:
    """body(); an error of the `errors` types ends the process through fail(command, exc, code)."""
    try:
        return body()
    except errors as exc:
        fail(command, exc, code)
        raise                                # unreachable: fail exits
