"""The CLI answers --help and plugins without importing torch or transformers (the cause of a slow
start-up; the start-up time itself is measured by bench/startup.py, not asserted here)."""

import subprocess
import sys


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


def test_help_imports_no_heavy_module():
    """What makes `truthprune --help` slow is importing torch/transformers (seconds); assert that
    cause, not a wall-clock time (timing lives in bench/startup.py)."""
    code = (
        "import sys\nfrom truthprune.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sklearn', 'datasets') if m in sys.modules)\n"
        "sys.stderr.write('CODE=%s HEAVY=%s' % (code, heavy))"
    )
    out = _run(code)
    assert "CODE=0 HEAVY=[]" in out.stderr, out.stderr[-2000:]
    assert "run" in out.stdout
