"""`layerscope --help` and `layerscope audit --server` need no TensorFlow: the command line imports the
service's heavy parts only inside the commands that run them (`serve`, a local `audit`)."""

from __future__ import annotations

import subprocess
import sys


def test_the_command_line_loads_without_tensorflow_keras_or_sql() -> None:
    code = (
        "import sys, layerscope.cli.app, layerscope.cli.audit.remote; "
        "heavy = ('tensorflow', 'keras', 'sqlalchemy', 'layerscope.service.app'); "
        "print(' '.join(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
