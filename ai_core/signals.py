"""Signals other apps listen to (ai_core imports none of them).

``job_finished(sender=AIJob, job=…, status=…)``: a job reached a terminal status
(completed, failed, cancelled). Sent inside the transaction that writes the status, once
per job (a terminal status never changes again); a receiver that acts on the outside world
defers that with ``transaction.on_commit``. ``job`` is the writer's copy: its ``pk``,
``public_id`` and ``brand_id`` are set, other fields may not show the new status yet.
"""

from django.dispatch import Signal

job_finished = Signal()
