#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zepix_admin.settings")
    from django.core.management import execute_from_command_line

    from zepix_admin.startup import skip_unused_drivers

    skip_unused_drivers()

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
