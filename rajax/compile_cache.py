"""JAX's persistent compilation cache for the ``rajax`` commands.

A command that runs the network compiles it first, and on a CPU the I3D forward takes longer to
compile than to run. With the persistent cache on, XLA executables are written to disk and a later
run with the same shapes, flags and JAX version loads them instead of compiling again.

The cache lives in the user's cache folder, ``$XDG_CACHE_HOME/rajax/jax-cache`` (by default
``~/.cache/rajax/jax-cache``). ``RAJAX_COMPILE_CACHE=0`` in the environment, or
``rajax --no-compile-cache COMMAND ...``, keeps it off. Every compilation that takes at least half
a second is cached, whatever the size of the executable. Delete the folder to empty the cache;
entries for other JAX versions are never read again, so an old folder can go at any time.

The cache is trusted code (an entry is an executable): the folder is created private to the user,
and it should not be shared with others.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENVIRONMENT_SWITCH = "RAJAX_COMPILE_CACHE"
MIN_COMPILE_TIME_SECS = 0.5

# JAX option -> the environment variable JAX reads it from when it is first imported.
_OPTIONS = {
    "jax_compilation_cache_dir": "JAX_COMPILATION_CACHE_DIR",
    "jax_persistent_cache_min_compile_time_secs": "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    # -1: cache entries of any size (0 would let JAX choose a minimum for the file system).
    "jax_persistent_cache_min_entry_size_bytes": "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
}


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/rajax/jax-cache``, or ``~/.cache/rajax/jax-cache``."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"  # XDG: relative is invalid
    return root / "rajax" / "jax-cache"


def switched_off() -> bool:
    """Whether the environment turns the cache off (``RAJAX_COMPILE_CACHE`` = 0, false, no, off)."""
    return os.environ.get(ENVIRONMENT_SWITCH, "").strip().lower() in ("0", "false", "no", "off")


def enable(
    directory: str | os.PathLike | None = None, *, min_compile_time_secs: float = MIN_COMPILE_TIME_SECS
) -> Path | None:
    """Turns on JAX's persistent compilation cache in ``directory`` (default: ``default_directory()``).

    Returns the cache folder, or None when ``RAJAX_COMPILE_CACHE=0`` says no or the folder cannot
    be created (the run then simply compiles as usual). Compilations that take at least
    ``min_compile_time_secs`` are cached.

    Call it before the first compilation. When JAX is not imported yet, only environment
    variables are set (JAX reads them on import, so a command that never uses JAX does not pay
    for importing it, and processes it starts inherit the setting); otherwise ``jax.config`` is
    updated too. JAX opens its cache at the first compilation that looks it up, so a folder set
    after compilations that ran without one still takes effect.
    """
    if switched_off():
        return None
    path = Path(directory) if directory is not None else default_directory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    values = {
        "jax_compilation_cache_dir": str(path),
        "jax_persistent_cache_min_compile_time_secs": float(min_compile_time_secs),
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }
    for option, value in values.items():
        os.environ[_OPTIONS[option]] = str(value)
    if "jax" in sys.modules:
        import jax

        for option, value in values.items():
            jax.config.update(option, value)
    return path


def traced_program(name: str, function, example_args: tuple, sources: tuple = (), key: str = ""):
    """``jax.jit(function)`` for arguments shaped like ``example_args``, its traced program kept on
    disk beside the compiled ones (``<cache>/traced``), so that a later process skips tracing too.

    JAX's persistent cache stores compiled executables, but a fresh process still traces the
    Python function to find the cache entry: seconds for I3D in Flax, more than a warm command's
    own work. The traced program (``jax.export``'s serialized StableHLO: data, no code) is keyed
    by ``name``, ``key`` (what else decides the computation: the model's options), the argument
    shapes and dtypes, the bytes of the ``sources`` files that define the computation, and the
    versions of JAX, jaxlib and rajax: a change to any of them traces afresh, never reuses a
    stale program. Without the cache (``RAJAX_COMPILE_CACHE=0``, ``--no-compile-cache``) it is
    plain ``jax.jit``.
    """
    import hashlib
    import importlib.metadata

    import jax

    jitted = jax.jit(function)
    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if switched_off() or not directory:
        return jitted
    import rajax

    specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), example_args)
    digest = hashlib.sha256()
    for part in (name, key, repr(jax.tree.structure(specs)), repr(jax.tree.leaves(specs)), jax.default_backend(),
                 jax.__version__, importlib.metadata.version("jaxlib"), rajax.__version__):
        digest.update(part.encode() + b"\0")
    for source in sources:
        digest.update(Path(source).read_bytes())
    path = Path(directory) / "traced" / f"{name}-{digest.hexdigest()[:24]}.bin"
    exported = None
    if path.is_file():
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # noqa: BLE001 - an unreadable entry is traced again, not an error
            exported = None
    if exported is None:
        exported = jax.export.export(jitted)(*specs)
        try:
            from rajax.files import atomic_write

            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            serialized = bytes(exported.serialize())
            atomic_write(path, lambda handle: handle.write(serialized))
        except OSError:
            pass  # a read-only cache only costs the next run its tracing
    return jax.jit(exported.call)
