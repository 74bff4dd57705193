"""The whole event-driven system on one machine: moto + the template + a dispatcher.

Needs the ``local`` extra (moto, PyYAML). See :mod:`.template` (the plan read from
``template.yaml``), :mod:`.stack` (provisioning on moto), :mod:`.dispatcher` (the Lambda
service's part: delivery, timeouts, retries, dead letters) with :mod:`.worker` (inside a
function's worker process), :mod:`.outcomes` (what each invocation did, told as it
was), :mod:`.stepfunctions` (state machines executed by moto, their Lambda tasks bridged to
our functions) and :mod:`.demo` (the ``stori-pipeline demo`` flow and its report).
"""
