"""Multi-host set-up: one process per host, joined through ``jax.distributed.initialize``.

Each process then sees all devices (``jax.devices()``) and drives its own
(``jax.local_devices()``); pmapped steps run over the global device set, so the gradient
``pmean`` spans every host. Each host reads its own shard of the data (``rajax.data`` shards by
``jax.process_index()``), and only process 0 writes logs, reports and exports (Orbax coordinates
the checkpoint writes of all processes itself).

On clusters that JAX recognises (SLURM, TPU pods, Kubernetes...) ``config.distributed.auto`` lets
JAX find the coordinator; otherwise give ``coordinator_address`` (``host:port`` of process 0),
``num_processes`` and this process's ``process_id``. CPU-only processes exchange data with gloo.
"""

from __future__ import annotations

from rajax.errors import RajaxError


def initialize(config) -> None:
    """Joins the processes of a multi-host run; does nothing for a single process.

    Must run before anything else touches JAX devices.
    """
    settings = config.distributed
    if not settings.coordinator_address and not settings.auto:
        return
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if settings.coordinator_address:
            jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                                       num_processes=settings.num_processes,
                                       process_id=settings.process_id)
        else:
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as error:
        raise RajaxError(f"cannot join the multi-host run (config.distributed: "
                         f"{settings.coordinator_address or 'auto'}): {error}") from error
    print(f"Process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} local "
          f"of {jax.device_count()} devices.")
