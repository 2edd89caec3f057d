"""JAX's persistent compilation cache: written by a real compilation in a fresh process, in the user's
cache folder, and not at all when the environment or ``rajax --no-compile-cache`` says no."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rajax import compile_cache

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# A tiny jitted computation; the threshold is lowered so that its ~10 ms compilation is cached.
_ENABLE_THEN_COMPILE = """
import sys
if sys.argv[1] == "jax-first":
    import jax
from rajax import compile_cache
print(compile_cache.enable(min_compile_time_secs=0))
import jax, jax.numpy as jnp
jax.jit(lambda x: jnp.sin(x) * 2 + 1)(jnp.arange(5.0)).block_until_ready()
"""

# `rajax` with one more command that compiles the same tiny computation.
_CLI_WITH_A_COMPILING_COMMAND = """
import sys, types
from rajax import cli

def run(args):
    import jax, jax.numpy as jnp
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.jit(lambda x: jnp.sin(x) * 2 + 1)(jnp.arange(5.0)).block_until_ready()
    return 0

command = types.ModuleType("rajax.commands._compile_probe")
command.HELP, command.add_arguments, command.run = "compiles something tiny", lambda parser: None, run
sys.modules[command.__name__] = command
cli.COMMANDS["compile-probe"] = "_compile_probe"
sys.exit(cli.main(sys.argv[1:]))
"""


def run_python(code, args, cache_home, **environment):
    env = {key: value for key, value in os.environ.items() if not key.startswith("JAX_")}
    env.pop(compile_cache.ENVIRONMENT_SWITCH, None)
    env.update(XDG_CACHE_HOME=str(cache_home), JAX_PLATFORMS="cpu", **environment)
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=PROJECT_ROOT, timeout=180,
        check=True, capture_output=True, text=True,
    )


def cache_files(cache_home):
    return sorted(path.name for path in Path(cache_home).rglob("*") if path.is_file())


@pytest.mark.parametrize("order", ["jax-first", "rajax-first"])
def test_enable_caches_compilations_in_the_user_cache_folder(tmp_path, order):
    # rajax-first: only environment variables (JAX reads them on import); jax-first: jax.config.
    run = run_python(_ENABLE_THEN_COMPILE, [order], tmp_path)
    folder = tmp_path / "rajax" / "jax-cache"
    assert run.stdout.strip() == str(folder)
    assert folder.is_dir() and (folder.stat().st_mode & 0o077) == 0  # private: entries are code
    assert any(name.startswith("jit__lambda") for name in cache_files(folder)), cache_files(tmp_path)


def test_environment_switch_keeps_the_cache_off(tmp_path):
    run = run_python(_ENABLE_THEN_COMPILE, ["rajax-first"], tmp_path, RAJAX_COMPILE_CACHE="0")
    assert run.stdout.strip() == "None"
    assert cache_files(tmp_path) == []


def test_every_command_uses_the_cache_unless_told_not_to(tmp_path):
    with_cache, without = tmp_path / "with", tmp_path / "without"
    run_python(_CLI_WITH_A_COMPILING_COMMAND, ["compile-probe"], with_cache)
    assert any(name.startswith("jit__lambda") for name in cache_files(with_cache))
    run_python(_CLI_WITH_A_COMPILING_COMMAND, ["--no-compile-cache", "compile-probe"], without)
    assert cache_files(without) == []


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_directory() == tmp_path / "rajax" / "jax-cache"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.default_directory() == Path.home() / ".cache" / "rajax" / "jax-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid by the XDG spec: ignored
    assert compile_cache.default_directory() == Path.home() / ".cache" / "rajax" / "jax-cache"


# A function traced through compile_cache.traced_program: it prints "traced" each time JAX traces it.
_TRACED_PROGRAM = """
import sys
from rajax import compile_cache
compile_cache.enable(min_compile_time_secs=0)
import jax.numpy as jnp, numpy as np

def function(weights, x):
    print("traced", flush=True)
    return jnp.tanh(x @ weights["w"]) + weights["b"]

weights = {"w": np.eye(3, dtype=np.float32) * 2, "b": np.ones(3, np.float32)}
x = np.arange(6, dtype=np.float32).reshape(2, 3)
program = compile_cache.traced_program("probe", function, (weights, x), sources=(sys.argv[1],), key=sys.argv[2])
print(np.asarray(program(weights, x)).round(5).tolist())
"""


def test_a_traced_program_is_kept_and_reused_by_the_next_process_until_its_sources_change(tmp_path):
    source = tmp_path / "model.py"
    source.write_text("version 1\n")
    expected = str((np.tanh(np.arange(6, dtype=np.float32).reshape(2, 3) * 2) + 1).round(5).tolist())
    first = run_python(_TRACED_PROGRAM, [str(source), "a"], tmp_path)
    assert first.stdout.splitlines() == ["traced", expected]
    traced = list((tmp_path / "rajax" / "jax-cache" / "traced").glob("probe-*.bin"))
    assert len(traced) == 1
    again = run_python(_TRACED_PROGRAM, [str(source), "a"], tmp_path)
    assert again.stdout.splitlines() == [expected]  # the kept program: not traced again
    source.write_text("version 2\n")  # the code that defines the computation changed
    changed = run_python(_TRACED_PROGRAM, [str(source), "a"], tmp_path)
    assert changed.stdout.splitlines() == ["traced", expected]
    other_key = run_python(_TRACED_PROGRAM, [str(source), "b"], tmp_path)
    assert other_key.stdout.splitlines()[0] == "traced"
    assert len(list(traced[0].parent.glob("probe-*.bin"))) == 3
    off = run_python(_TRACED_PROGRAM, [str(source), "a"], tmp_path / "off", RAJAX_COMPILE_CACHE="0")
    assert off.stdout.splitlines() == ["traced", expected] and not (tmp_path / "off").exists()
