"""evalflow: LLM evaluations as scheduled, orchestrated batch jobs."""

from evalflow.home import apply_offline_environment

# Before weave, prefect or wandb are imported anywhere: no telemetry leaves the machine.
apply_offline_environment()
