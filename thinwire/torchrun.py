"""torchrun with thinwire's one-line errors: `python -m thinwire.torchrun <torchrun's arguments>`.

torch's own `torchrun` ends every failed job with a ChildFailedError traceback and a block of text after
the ranks' own one-line errors. This runs the same launcher (torch.distributed.run, same arguments) and
ends a failed job with one line per failed rank instead: its rank, how it ended (exit code or signal)
and, when the rank was a thinwire command, its own one-line error, which thinwire writes to the file
torchrun names in TORCHELASTIC_ERROR_FILE (thinwire/cli.py, `record_error`). Exit status: the exit code
of the lowest failed rank, 128 + the signal that ended it, or 128 + the signal that ended the launcher.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

PROG = "thinwire.torchrun"


def record_error(line: str) -> None:
    """Write a rank's one-line error where its torchrun reads it (TORCHELASTIC_ERROR_FILE), if it is set;
    in the string form that torch's ProcessFailure reads. Never fails the caller."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as f:
            json.dump({"message": line, "timestamp": int(time.time())}, f)
    except OSError:
        pass


class _FirstFailureLine(logging.Filter):
    """Drops torch's own "failed (exitcode: ...) local_rank: ..." log line: main() says it, for every rank."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("failed (exitcode")


def _message(failure) -> str:
    """The rank's own one-line error from its error file, or "" when it wrote none."""
    if not os.path.isfile(failure.error_file):  # torch names no file "<N/A>", its data then "<NONE>"
        return ""
    data = failure.error_file_data or {}
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, dict):  # torch's ErrorHandler form: the exception, its traceback aside
        message = message.get("message")
    return " ".join(str(message).split()) if message else ""


def describe(rank: int, failure) -> str:
    """One line for one failed rank."""
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
    else:
        how = f"exited with code {failure.exitcode}"
    line = f"{PROG}: rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) {how}"
    message = _message(failure)
    return f"{line}: {message}" if message else line


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic.multiprocessing.api").addFilter(_FirstFailureLine())
    args = parse_args(argv if argv is not None else sys.argv[1:])
    try:
        run(args)
    except ChildFailedError as e:
        failures = sorted(e.failures.items())
        for rank, failure in failures:
            print(describe(rank, failure), file=sys.stderr, flush=True)
        code = failures[0][1].exitcode if failures else 1
        return code if code > 0 else 128 - code
    except SignalException as e:  # the launcher was told to stop (Ctrl-C, timeout): its ranks are stopped
        print(f"{PROG}: stopped by {signal.Signals(e.sigval).name}; its ranks were stopped", file=sys.stderr,
              flush=True)
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
