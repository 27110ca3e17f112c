"""The ``harp`` subcommands: one module per command, each ``main(argv) -> int`` with its own
argparse ``--help``. They parse arguments, call into the layers below and print; the work itself
lives in ``harp.data``, ``harp.models``, ``harp.train``, ``harp.tune``, ``harp.evaluate`` and
``harp.export``."""
