"""The whole event-driven system on one machine: moto + the template + a dispatcher.

Needs the ``local`` extra (moto, PyYAML). See :mod:`.template` (the plan read from
``template.yaml``), :mod:`.stack` (provisioning on moto), :mod:`.dispatcher` (the Lambda
service's part) and :mod:`.demo` (the ``stori-pipeline demo`` flow).
"""
