"""Subcommands of the ``rajax`` CLI; see ``rajax.cli`` for the contract each module follows."""
