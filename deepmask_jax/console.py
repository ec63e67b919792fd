"""What every command line prints: its own output, and errors as one line.

Entry points (`main`, `propose`, `convert`) run through `run_app`, which adds
`--verbose` and:

- keeps library chatter off the terminal unless --verbose: absl/orbax INFO
  and library WARNING lines, TensorFlow's C++ notices (oneDNN, CPU features,
  per-op warnings), deprecation notices and Python warnings raised by other
  packages. The project prints its own progress, data warnings and results
  with print(), so they stay.
- turns an error the user can act on (deepmask_jax.errors.InputError, a
  missing or unreadable file, a bad json) into one line on stderr,
  `error: <message> (traceback: <log>)`, and exit status 1. The traceback
  goes to the log file (the entry point's, else a temporary one) and, with
  --verbose, to the terminal too. Other exceptions are bugs: their traceback
  is printed as usual, and the exit status is 1 as well.
- ends a failed run at once with its exit status, without the interpreter's
  shutdown: library threads left waiting (orbax after a failed save) would
  be joined forever, and tf.data iterators destroyed at interpreter exit
  abort or hang the process.
- with a log file (`main`: WORKDIR/log.txt) and without --verbose, sends
  everything libraries write to the process's stderr descriptor into that
  log: TensorFlow's and XLA's C++ notices (written before Python logging
  exists, and since TensorFlow 2.21 whatever TF_CPP_MIN_LOG_LEVEL says),
  tracebacks printed from library threads and callbacks. The project's own
  lines (sys.stderr, progress bars) still reach the terminal.

Importing this module sets TF_CPP_MIN_LOG_LEVEL=2 (unless --verbose is on the
command line or the variable is already set): TensorFlow reads it once, when
it is first imported, so entry points import this module before anything
that may import TensorFlow. This module imports neither TensorFlow nor JAX.
"""

import io
import json
import logging as std_logging
import os
import sys
import tempfile
import threading
import traceback
import warnings

from absl import app, flags, logging

from deepmask_jax.errors import InputError

if '--verbose' not in sys.argv:
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Errors whose message says what the user must fix; the traceback helps no one.
USER_ERRORS = (InputError, FileNotFoundError, FileExistsError, PermissionError,
               IsADirectoryError, NotADirectoryError, json.JSONDecodeError)
VERBOSE_FLAG = 'verbose'


def define_verbose_flag() -> None:
  """Defines --verbose once (several entry points may share a process)."""
  if VERBOSE_FLAG not in flags.FLAGS:
    flags.DEFINE_bool(VERBOSE_FLAG, False, 'Show library log lines, warnings '
                      'and, on an error, its traceback.')


def is_verbose() -> bool:
  """--verbose, read from sys.argv while the flags are not parsed yet."""
  if flags.FLAGS.is_parsed() and VERBOSE_FLAG in flags.FLAGS:
    return flags.FLAGS[VERBOSE_FLAG].value
  return '--verbose' in sys.argv[1:]


def quiet_libraries(verbose: bool) -> None:
  """Library log lines and warnings off (or back on with `verbose`).

  An explicit --verbosity (absl's flag) is respected as given.
  """
  explicit = 'verbosity' in flags.FLAGS and flags.FLAGS['verbosity'].present
  if verbose:
    if not explicit:
      logging.set_verbosity(logging.INFO)
    std_logging.root.setLevel(std_logging.INFO)
    warnings.resetwarnings()
    return
  if not explicit:
    logging.set_verbosity(logging.ERROR)
  std_logging.root.setLevel(std_logging.ERROR)
  warnings.simplefilter('ignore')
  warnings.filterwarnings('default', module=r'deepmask_jax(\.|$)')


def one_line(error: BaseException) -> str:
  """The message of `error` on one line (OS errors: what, then the path)."""
  if isinstance(error, OSError) and error.strerror and error.filename:
    message = f'{error.strerror}: {error.filename}'
  elif isinstance(error, KeyError) and len(error.args) == 1:
    message = str(error.args[0])
  else:
    message = str(error)
  message = ' '.join(line.strip() for line in message.splitlines() if line.strip())
  if isinstance(error, json.JSONDecodeError):
    message = f'invalid json: {message}'
  return message or type(error).__name__


def temporary_log() -> str:
  """A new log file in the temporary folder (for runs with no folder of their own)."""
  with tempfile.NamedTemporaryFile('w', prefix='deepmask_jax-', suffix='.log',
                                   delete=False) as f:
    return f.name


def _write_log(log_path, error: BaseException) -> str:
  """Appends the traceback of `error` to `log_path` (or a temporary file)."""
  text = ''.join(traceback.format_exception(error))
  for path in (log_path, None):
    if path is None or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
      path = temporary_log()
    try:
      with open(path, 'a') as f:
        f.write(text)
      return path
    except OSError:
      continue  # An unwritable workdir: a temporary file instead.
  return path


def report(error: BaseException, log_path=None, verbose: bool = False) -> int:
  """Prints `error` as the module doc says; returns the exit status (1)."""
  sys.stdout.flush()
  if not isinstance(error, USER_ERRORS):
    traceback.print_exception(error)
    return 1
  written = _write_log(log_path, error)
  if verbose:
    traceback.print_exception(error)
  print(f'error: {one_line(error)} (traceback: {written})', file=sys.stderr,
        flush=True)
  return 1


def _exit(status: int) -> None:
  """Ends a failed run now, whatever library threads are still waiting.

  A failed orbax save leaves non-daemon threads waiting for signals that
  never come, and interpreter shutdown would join them forever; tf.data
  iterators destroyed at interpreter exit abort or hang. So the streams are
  flushed and the process ends without the interpreter's shutdown.
  """
  for stream in (sys.stdout, sys.stderr, sys.__stderr__):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass  # A closed or broken stream: nothing more can reach it.
  os._exit(status)  # pylint: disable=protected-access


def _print_to_log(*exc_info) -> None:
  """A library's stray traceback (thread, callback) goes to the log."""
  traceback.print_exception(*exc_info[:3], file=sys.__stderr__)


def divert_library_output(log_path: str) -> None:
  """Points the stderr descriptor (fd 2) at `log_path`; keeps ours on the terminal.

  Native code (TensorFlow, XLA, tensorstore) writes to fd 2 directly, so it
  is diverted there: fd 2 is reopened on the log (appending), while
  `sys.stderr`, which the project's own messages and progress bars use,
  becomes a stream on a copy of the terminal's descriptor. `sys.__stderr__`
  (fd 2) then leads to the log, and so do the hooks that print tracebacks of
  library threads, callbacks and unraisable exceptions. Call it again to move
  the log; the terminal stays the one of the first call.
  """
  global _terminal
  if _terminal is None:
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    _terminal = io.TextIOWrapper(io.FileIO(terminal_fd, 'w'),
                                 encoding=sys.stderr.encoding,
                                 errors='backslashreplace', line_buffering=True)
  sys.__stderr__.flush()
  with open(log_path, 'a') as log:
    os.dup2(log.fileno(), 2)
  sys.stderr = _terminal
  sys.excepthook = _print_to_log
  threading.excepthook = lambda args: _print_to_log(
      args.exc_type, args.exc_value, args.exc_traceback)
  sys.unraisablehook = lambda unraisable: _print_to_log(
      unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)


_terminal = None  # sys.stderr once divert_library_output has run.


def _unknown_field(error: BaseException) -> InputError:
  """The error of a --config.<field> override naming no field of the config
  (ml_collections raises it while absl parses the flags)."""
  name = one_line(error).strip('\'"')
  given = [arg for arg in sys.argv[1:]
           if arg.startswith('--') and name in arg.split('=')[0]]
  flag = given[0].split('=')[0] if given else name
  return InputError(f'{flag}: the config has no field {name!r}')


def run_app(main, log_path=None) -> None:
  """absl's app.run(main) with --verbose, quiet libraries and one-line errors.

  Args:
    main: the entry point's main(argv); flags are parsed when it is called.
    log_path: a function of nothing -> the log file for tracebacks and, unless
      --verbose, library output (called after the flags are parsed; it may
      create the log's folder). None: tracebacks go to a temporary file and
      library output stays on the terminal.
  """
  define_verbose_flag()
  started = False
  log = None  # log_path(), once it has been asked.

  def quiet_main(argv):
    nonlocal started, log
    started = True
    quiet_libraries(is_verbose())
    if log_path is not None and not is_verbose():
      try:
        log = log_path()
        divert_library_output(log)
      except OSError:
        pass  # No usable log: library output stays on the terminal.
    return main(argv)

  try:
    try:
      app.run(quiet_main)
    except (AttributeError, KeyError) as error:
      if started:
        raise
      raise _unknown_field(error) from error
  except SystemExit:
    raise
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr, flush=True)
    _exit(130)
  except Exception as error:  # pylint: disable=broad-except
    path = log
    if path is None and log_path is not None and flags.FLAGS.is_parsed():
      try:
        path = log_path()
      except Exception:  # pylint: disable=broad-except
        path = None  # Whatever went wrong is reported below.
    _exit(report(error, path, is_verbose()))
