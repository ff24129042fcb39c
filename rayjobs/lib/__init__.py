"""The machinery the entry points in ``rayjobs/`` share: configuration, Ray Data input, the
training loop and its launch, checkpoints, tracking, scoring and detection records. Nothing here
is run directly; ``python rayjobs/<entry point>.py`` (or ``serve run rayjobs.serve:app``) is."""
