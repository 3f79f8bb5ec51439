"""Shell commands as data: print them (dry run) or run them, the same way in every script."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


class CommandError(RuntimeError):
    """A command whose output was not what the script needs; the message says which."""


@dataclass(frozen=True)
class Command:
    """One command, and the folder (relative to the repository) it runs in."""

    argv: tuple[str, ...]
    cwd: Path = Path(".")

    def render(self) -> str:
        line = shlex.join(self.argv)
        return line if self.cwd == Path(".") else f"(cd {self.cwd} && {line})"


@dataclass
class Runner:
    """Runs commands, or in a dry run only prints them. Every command is printed first."""

    dry_run: bool
    root: Path = REPO_ROOT
    printed: list[str] = field(default_factory=list)

    def show(self, text: str) -> None:
        self.printed.append(text)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def run(self, command: Command) -> None:
        self.show(f"$ {command.render()}")
        if not self.dry_run:
            self._execute(command, capture=False)

    def json(self, command: Command) -> Any:
        """Run a command that prints JSON and parse it; ``None`` in a dry run."""
        self.show(f"$ {command.render()}")
        if self.dry_run:
            return None
        result = self._execute(command, capture=True)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise CommandError(f"`{command.render()}` did not print JSON: {exc}") from None

    def _execute(self, command: Command, *, capture: bool) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                command.argv,
                cwd=self.root / command.cwd,
                check=True,
                capture_output=capture,
                text=True,
            )
        except FileNotFoundError:
            raise CommandError(
                f"`{command.argv[0]}` is not installed or not on PATH (needed for "
                f"`{command.render()}`)"
            ) from None
