"""Operating a deployed stack from the command line: users, reprocessing, status.

:mod:`.deployment` finds a stack's resources from its CloudFormation outputs (``--stack-name``)
and builds clients for the usual AWS profile / region / endpoint settings; :mod:`.users`,
:mod:`.reprocess` and :mod:`.status` are the operations, each an async function over injected
clients plus its command; :mod:`.commands` registers ``reprocess`` and ``status``.

Nothing here runs in Lambda; it needs only the project's runtime dependencies.
"""
