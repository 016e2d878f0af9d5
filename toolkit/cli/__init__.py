"""The ``toolkit`` command line: a thin typer shell over the library.

Results go to stdout (``--json`` for scripts), messages and progress to stderr. Library errors
become one line on stderr and an exit code: 2 for usage errors, 1 for failures. No traceback
unless ``TOOLKIT_DEBUG=1``.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from typing import Callable

import typer

app = typer.Typer(
    name="toolkit",
    help="Search and classify news passages about official contacts between states and militaries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Check labelled data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def err(message: str) -> None:
    typer.echo(message, err=True)


def emit_json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (scikit-learn's on small data) as one ``warning:`` line, not file and source."""
    err(f"warning: {message}")


def setup_logging(quiet: bool, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for noisy in ("sentence_transformers", "transformers", "httpx", "huggingface_hub", "faiss", "bm25s",
                  "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # trafilatura logs ERRORs ("lxml parsing failed", "discarding data") for pages it cannot use;
    # the reader reports those files itself ("no article text left after cleaning, skipped").
    for html_logger in ("trafilatura", "htmldate", "courlan", "justext"):
        logging.getLogger(html_logger).setLevel(logging.CRITICAL)
    warnings.showwarning = _show_warning
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def handle_errors(command: Callable) -> Callable:
    """Turn library exceptions into one-line messages and exit codes."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from toolkit.errors import ToolkitError

        try:
            return command(*args, **kwargs)
        except ToolkitError as exc:
            err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BrokenPipeError:
            raise typer.Exit(0) from None
        except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
            if os.environ.get("TOOLKIT_DEBUG"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            err(f"error: unexpected {type(exc).__name__}: {first} (set TOOLKIT_DEBUG=1 for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


def _print_version(value: bool) -> None:
    if value:  # an eager option's callback runs while parsing, before the group asks for a command
        from toolkit import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """Search and classify news passages about official contacts between states and militaries."""


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX would) unless the user set that variable.

    Indexing runs a dozen threads (reader, writer, OpenVINO streams); by default glibc gives threads
    their own arenas, which hold freed memory apart. Two arenas lowered the peak RSS of indexing
    100k passages from ~1.5 GB to ~1.3 GB at the same speed (docs/performance.md). Must run before
    the threads start; does nothing off glibc.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8 is M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        pass


def main() -> None:
    _limit_malloc_arenas()
    app()


# Commands register on import, so `toolkit.cli.app` is complete for CliRunner too.
from toolkit.cli import classify_cmds, data_cmds, search_cmds  # noqa: E402,F401

from toolkit.cli import retrieval_cmds  # noqa: E402,F401
