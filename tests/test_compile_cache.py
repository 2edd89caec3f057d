"""JAX's persistent compilation cache: written by a real compilation in a fresh process, in the user's
cache folder, and not at all when the environment or ``rajax --no-compile-cache`` says no."""

import os
import subprocess
import sys
from pathlib import Path

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
