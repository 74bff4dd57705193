"""Files too big for one function: the distributed ingest on Step Functions (Distributed Map).

:mod:`.split` cuts an object into byte ranges that start on true record boundaries (pure);
:mod:`.ranges` reads one slice through the single path's own reader and merges the slices'
results (no AWS); :mod:`.steps` is what each task of the state machine does; :mod:`.start`
routes an "Object Created" event to the workflow, at most once per object version.
"""

from stori_pipeline.scaleout.split import Slice, link, scan_window, split_bytes
from stori_pipeline.scaleout.start import execution_input, start_workflow
from stori_pipeline.scaleout.steps import STEPS, Clients, Job, StepError, run_step, run_with_session

__all__ = [
    "STEPS",
    "Clients",
    "Job",
    "Slice",
    "StepError",
    "execution_input",
    "link",
    "run_step",
    "run_with_session",
    "scan_window",
    "split_bytes",
    "start_workflow",
]
