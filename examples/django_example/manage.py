#!/usr/bin/env python
"""Django's command-line utility for the example project.

Run from the repository root::

    python examples/django_example/manage.py check
    python examples/django_example/manage.py runserver
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Runs a management command with the example's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ratelimit_demo.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
