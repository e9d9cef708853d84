"""One module per CLI command: ``add_arguments(parser)`` and ``run(args) -> int``.

Import httpx, GitPython and apscheduler inside ``run`` only (see ``image_updater.cli``).
"""
