"""What dispatch tells the apps that react to it (alerts, webhooks), sent once committed: a
command's status changed."""

from django.dispatch import Signal

# command (the Command), previous (its status before)
command_status_changed = Signal()
