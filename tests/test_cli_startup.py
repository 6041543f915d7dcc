"""The CLI answers --help and plugins without importing torch or transformers, quickly."""

import subprocess
import sys
import time


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_cli_import_does_not_import_torch():
    out = _run(
        "import sys, truthprune.cli.main as m; m._register_builtin_commands(); m._register_plugin_commands();"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def test_plugins_command_does_not_import_torch():
    code = (
        "import sys\nfrom truthprune.cli.main import main\n"
        "try:\n    main(['plugins', '--json'])\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('TORCH=%s' % ('torch' in sys.modules))"
    )
    out = _run(code)
    assert "TORCH=False" in out.stderr


def test_help_is_fast():
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "truthprune", "--help"], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0 and "run" in out.stdout
    assert elapsed < 1.5, f"--help took {elapsed:.2f}s"
