"""``python -m jaxwm.cli``: the ``jaxwm`` command without installing it."""

from jaxwm.cli import main

main()
