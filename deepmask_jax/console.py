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
- drops every frame of a failed run before the interpreter exits, so that
  tf.data iterators (and their C++ threads) are destroyed while Python still
  runs; destroyed at interpreter exit they abort or hang the process.

Importing this module sets TF_CPP_MIN_LOG_LEVEL=2 (unless --verbose is on the
command line or the variable is already set): TensorFlow reads it once, when
it is first imported, so entry points import this module before anything
that may import TensorFlow. This module imports neither TensorFlow nor JAX.
"""

import gc
import json
import logging as std_logging
import os
import sys
import tempfile
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


def _write_log(log_path, error: BaseException) -> str:
  """Appends the traceback of `error` to `log_path` (or a temporary file)."""
  text = ''.join(traceback.format_exception(error))
  try:
    if log_path and os.path.isdir(os.path.dirname(os.path.abspath(log_path))):
      with open(log_path, 'a') as f:
        f.write(text)
      return log_path
  except OSError:
    pass  # An unwritable workdir: a temporary file instead.
  with tempfile.NamedTemporaryFile('w', prefix='deepmask_jax-', suffix='.log',
                                   delete=False) as f:
    f.write(text)
    return f.name


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


def _release(error: BaseException) -> None:
  """Frees the frames `error` keeps alive (and the iterators in them)."""
  while error is not None:
    error.__traceback__ = None
    error = error.__cause__ or error.__context__
  sys.last_type = sys.last_value = sys.last_traceback = None
  gc.collect()


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
    log_path: a function of nothing -> the log file for tracebacks (called
      after the flags are parsed; None or an unusable path: a temporary file).
  """
  define_verbose_flag()
  started = False

  def quiet_main(argv):
    nonlocal started
    started = True
    quiet_libraries(is_verbose())
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
  except KeyboardInterrupt as error:
    print('interrupted', file=sys.stderr, flush=True)
    _release(error)
    del error
    sys.exit(130)
  except Exception as error:  # pylint: disable=broad-except
    path = None
    if log_path is not None and flags.FLAGS.is_parsed():
      try:
        path = log_path()
      except Exception:  # pylint: disable=broad-except
        path = None  # Whatever went wrong is reported below.
    status = report(error, path, is_verbose())
    _release(error)
    del error
    sys.exit(status)
