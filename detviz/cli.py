"""What every detviz command line shares."""

from __future__ import annotations

import argparse
from typing import NoReturn

USAGE_ERROR = 2  # the exit status of a command line that cannot be run as given (argparse's own)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr ("error: ... (see --help)") and
    exit status USAGE_ERROR, without the usage block argparse prints by default."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"error: {message} (see --help)\n")
