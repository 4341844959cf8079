"""Subcommands of the ``rot180`` command line, one module each (see :mod:`rot180.cli`).

A command module ``<name>.py`` exposes ``add_parser(subparsers)``, which registers a subparser
called ``<name>`` with its options, and ``run(args) -> int``, which returns the exit status.
Heavy imports belong inside ``run`` so that ``rot180 --help`` stays fast.
"""
