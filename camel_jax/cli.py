"""One convention for every `python -m camel_jax.<command>`: a user's mistake ends in one line
`<prog>: error: <message naming the flag, field or file>` on stderr and exit code 2, never a traceback.

A user's mistake is a bad or unknown flag, an unknown config variant or field, a missing or unreadable file, a name
that is not in a table. Commands raise `UsageError` (or a module's own ValueError subclass such as ConfigError) and
run through `run`, which reports them; argparse commands build their parser with `ArgumentParser`, absl ones pass
`absl_flags_parser(...)` to `app.run`. Bugs keep their traceback: only the error types a command lists are caught.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import inspect
import json
import os
import re
import sys
from typing import Any, Callable, Iterator, NoReturn, Sequence

EXIT_USAGE = 2
# Raised by the OS for a path the user gave; their message names the file.
FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


class UsageError(Exception):
    """A user's mistake; the message is one line naming the flag, config field or file."""


def one_line(message: Any) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def describe(e: BaseException) -> str:
    """The user-facing text of an error: OS errors as `<file>: <reason>`, a KeyError without its quotes."""
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, KeyError) and len(e.args) == 1:
        return str(e.args[0])
    return str(e)


def report(prog: str, message: Any) -> int:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_USAGE


def fail(prog: str, message: Any) -> NoReturn:
    sys.exit(report(prog, message))


def run(prog: str, fn: Callable[..., Any], *args: Any, errors: tuple[type[BaseException], ...] = ()) -> int:
    """fn(*args) as a command: its return value is the exit code (None: 0); UsageError, file errors and `errors`
    are reported as `prog: error: ...` and give 2."""
    try:
        return int(fn(*args) or 0)
    except (UsageError,) + FILE_ERRORS + tuple(errors) as e:
        return report(prog, describe(e))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the convention: errors are one line (no usage block), an unknown flag is named before any
    missing required argument, and subcommand parsers inherit both."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)  # `--data` never silently means `--data_dir`
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        fail(self.prog, message)

    def _first_unknown(self, args: Sequence[str]) -> tuple[str, str] | None:
        """(parser prog, flag) of the first --flag neither this parser nor the chosen subcommand knows."""
        subcommands = {name: p for a in self._actions if isinstance(a, argparse._SubParsersAction)
                       for name, p in a.choices.items()}
        for i, arg in enumerate(args):
            if arg == "--":
                return None
            if arg in subcommands:  # the rest belongs to the subcommand
                sub = subcommands[arg]
                return sub._first_unknown(args[i + 1:]) if isinstance(sub, ArgumentParser) else None
            if arg.startswith("--") and arg.split("=", 1)[0] not in self._option_string_actions:
                return self.prog, arg.split("=", 1)[0]
        return None

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        args = sys.argv[1:] if args is None else list(args)
        unknown = self._first_unknown(args)
        if unknown:
            fail(unknown[0], f"unrecognized flag {unknown[1]} (see --help)")
        return super().parse_args(args, namespace)


def absl_flags_parser(prog: str, check: Callable[[list[str]], None] | None = None) -> Callable[[list[str]], Any]:
    """A `flags_parser` for absl's `app.run`: flag errors as one line and exit 2 (absl: two lines, exit 1).
    `check(argv)` runs first and may raise UsageError (e.g. `check_config_flag`)."""
    def parse(argv: list[str]) -> Any:
        from absl import flags

        try:
            if check is not None:
                check(argv)
            return flags.FLAGS(argv)
        except flags.UnrecognizedFlagError as e:  # worded as ArgumentParser words it
            fail(prog, f"unrecognized flag --{e.flagname} (see --help)")
        except flags.Error as e:
            fail(prog, str(e).splitlines()[0] if str(e).strip() else type(e).__name__)
        except UsageError as e:
            fail(prog, e)
        except SystemExit as e:  # absl exits 1 after printing --help; asking for help is no error
            if e.code == 1 and set(argv[1:]) & {"--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"}:
                sys.exit(0)
            raise

    return parse


def _flag_value(argv: Sequence[str], name: str) -> str | None:
    """The last value of --name=V / --name V in argv (absl syntax), None if absent."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if re.fullmatch(rf"--?{name}", arg) and i + 1 < len(argv):
            value = argv[i + 1]
        elif re.match(rf"--?{name}=", arg):
            value = arg.split("=", 1)[1]
    return value


def load_config_file(spec: str, flag: str = "config") -> Any:
    """`file.py[:variant]` -> its get_config(variant) result, as ml_collections' config_flags loads it, but every
    failure a UsageError naming the flag, the file and the variants when the module lists them (VARIANTS)."""
    path, colon, variant = spec.partition(":")
    where = f"--{flag}={spec}"
    if not os.path.isfile(path):
        raise UsageError(f"{where}: no such config file {path!r}")
    try:
        mod_spec = importlib.util.spec_from_file_location(f"_camel_jax_checked_{flag}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    except Exception as e:  # a config file that does not even import: name it, keep the reason
        raise UsageError(f"{where}: {path} fails to load: {type(e).__name__}: {one_line(e)}") from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise UsageError(f"{where}: {path} defines no get_config()")
    if colon and not inspect.signature(get_config).parameters:
        raise UsageError(f"{where}: {path} takes no variant (use --{flag}={path})")
    try:
        return get_config(*([variant] if colon else []))
    except (ValueError, TypeError, KeyError) as e:
        known = getattr(module, "VARIANTS", None)
        hint = f" (variants: {', '.join(known)})" if known and len(known) <= 12 else ""
        raise UsageError(f"{where}: {describe(e)}{hint}") from None


def check_config_flag(argv: Sequence[str], default: str, flag: str = "config") -> None:
    """Load the --config file the way absl will and check that every --config.<path> override names an existing
    field, so an unknown variant, missing file or mistyped field is one line before anything else runs."""
    cfg = load_config_file(_flag_value(argv, flag) or default, flag)
    for arg in argv:
        m = re.match(rf"--?(?:no)?{flag}\.([^=]+)", arg)
        if not m:
            continue
        node, parts = cfg, m.group(1).split(".")
        for i, part in enumerate(parts):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                parent = ".".join([flag] + parts[:i])
                raise UsageError(f"--{flag}.{m.group(1)}: {parent} has no field {part!r}"
                                 + (f"; its fields: {', '.join(keys)}" if keys else f" ({parent} is a value)"))
            node = node[part]


def json_lines(path: Any, error: type[Exception] = UsageError) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line of a .jsonl (or .jsonl.gz) file, read lazily. A missing or
    unreadable file, a line that is not JSON or not a JSON object is `error` naming `file:line`: every JSONL input
    of every command reports a bad line the same way (callers check their own fields after)."""
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise error(f"{path}:{n}: not JSON ({e})") from None
                if not isinstance(obj, dict):
                    raise error(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
                yield n, obj
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a .jsonl file") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise error(f"{path}: unreadable ({e})") from None
