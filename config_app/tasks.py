"""The Huey consumer also watches the config files: one watcher per consumer process."""

import threading

from huey.contrib.djhuey import HUEY

from config_app import watcher

_started = threading.Lock()
_observer = None


@HUEY.on_startup()
def start_config_watcher():
    global _observer
    with _started:
        if _observer is None:
            _observer = watcher.start()
