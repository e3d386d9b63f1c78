"""``python -m deskwire``: the same as the ``deskwire`` command."""

from deskwire.cli import main

main()
