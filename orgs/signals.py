"""Signals orgs sends so that apps which depend on it can follow, without orgs importing them.

`membership_removed` is sent inside the transaction that removes a membership: whatever a
receiver changes commits or rolls back with the removal. credentials revokes the person's
per-credential grants in that organisation, agents the agent tokens they issued there (a
removed member keeps nothing, and someone re-added later starts from their role alone).
"""

from django.dispatch import Signal

# kwargs: org (Organization), user (User), actor (audit.services.Actor)
membership_removed = Signal()
