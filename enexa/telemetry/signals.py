"""What telemetry tells the apps that react to it (alerts, webhooks), sent once the change is
committed: a site went offline or came back online, gateway events were stored, the gateway
health polled from Amperio was stored."""

from django.dispatch import Signal

# site_pk, at (datetime), reason (a TransitionReason)
site_went_offline = Signal()
site_came_online = Signal()
# site_pks (set of primary keys), kinds (set of event kinds among them)
events_stored = Signal()
# site_pks (set of primary keys), at (datetime): the poll time each site's health now carries.
gateway_health_recorded = Signal()
