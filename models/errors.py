"""Typed errors of the model package. Each carries a short machine ``code`` and a one-line message."""

from __future__ import annotations


class TempoError(Exception):
    code = "tempo_error"


class CheckpointError(TempoError):
    """A checkpoint directory is missing, incomplete or not the expected layout."""

    code = "bad_checkpoint"


class InputError(TempoError):
    """The request's inputs cannot be processed (bad frames, question too long, bad options)."""

    code = "bad_input"
