"""A signal while a command starts (issue 28, item 11): Ctrl-C or SIGTERM while torch and numpy import ends every
command with one line and 128 + the signal, never lost (exit 0, nothing printed: a signal during numpy's import),
never a traceback from inside an import, never an abort from torch's C++ (exit 134).

The signal is sent by an import hook at the moment the named module is first imported, so each case is exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

SIGNAL_ON_IMPORT = textwrap.dedent("""
    import os, signal, sys

    module, name, command = sys.argv[1:4]
    sys.argv = [command, "--help"]

    class SignalOnImport:
        def find_spec(self, fullname, path=None, target=None):
            if fullname == module:
                sys.meta_path.remove(self)
                os.kill(os.getpid(), getattr(signal, name))
            return None

    sys.meta_path.insert(0, SignalOnImport())
    if command == "encodec-bench":
        from encodec_eval.entry import main
    elif command == "encodec-tokenize":
        from codec.encodec.entry import tokenize as main
    else:
        from codec.encodec.entry import main
    sys.exit(main())
""")


@pytest.mark.parametrize("command,module,name", [
    ("encodec", "numpy", "SIGINT"), ("encodec", "numpy", "SIGTERM"), ("encodec", "torch", "SIGINT"),
    ("encodec", "soundfile", "SIGTERM"), ("encodec-tokenize", "numpy", "SIGINT"),
    ("encodec-tokenize", "torch", "SIGTERM"), ("encodec-bench", "numpy", "SIGTERM"),
    ("encodec-bench", "torch", "SIGINT"),
])
def test_a_signal_while_a_command_imports_is_one_line(tmp_path, command, module, name):
    done = subprocess.run([sys.executable, "-c", SIGNAL_ON_IMPORT, module, name, command], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, HOME=str(tmp_path), OMP_NUM_THREADS="1"),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not an inherited SIG_IGN
    sig = getattr(signal, name)
    assert done.returncode == 128 + sig, done.stderr
    assert done.stderr.strip() == f"{command}: stopped by {name}; it was still starting, nothing was written"
    assert done.stdout == ""  # the command did not go on to print its help


@pytest.mark.parametrize("entry", ["codec.encodec.entry", "encodec_eval.entry"])
def test_an_entry_point_takes_the_signals_before_any_heavy_import(entry):
    """Until ``run_command`` takes the signals, a Ctrl-C prints a KeyboardInterrupt traceback: the entry point's own
    imports must be over at once. ``multiprocessing`` (with its ``connection``, about 50 ms) was among them, for a
    helper that only a loader worker calls."""
    probe = f"import sys, {entry}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    loaded = {name.split(".")[0] for name in done.stdout.split()}
    assert not loaded & {"multiprocessing", "numpy", "torch", "soundfile"}, loaded
