#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zepix_admin.settings")
    from django.core.management import execute_from_command_line

    from zepix_admin.startup import skip_unused_drivers

    skip_unused_drivers()

    from django.core.exceptions import ImproperlyConfigured

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:  # the environment's settings: what to set, not a traceback
        sys.exit(f"Zepix Admin's settings: {error}")


if __name__ == "__main__":
    main()
