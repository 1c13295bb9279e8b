from django.dispatch import Signal

# Sent in the process that saved, after the version is committed and the file written.
# Arguments: scope, version (int), diff ([{path, old, new, change}]), author.
config_changed = Signal()
