"""DAS data formats: audio, annotations, song definitions, targets and training datasets.

See ``docs/das.md`` and the DAS data-format page. Public functions::

    load_audio, save_audio                      # .npz / .wav
    pcm_scale, scale_pcm                        # wav samples to [-1, 1) as DAS reads them
    read_annotations, write_annotations         # *_annotations.csv  -> Annotations
    read_definitions, write_definitions         # *_definitions.csv  -> {name: category}
    check_definitions                           # conflicts between the two
    make_targets                                # y [samples, classes], noise first
    make_dataset, find_recordings               # a DAS training store from recordings
    synthetic.make_recordings                   # fly-song-like test data
"""

from __future__ import annotations

from . import synthetic
from .annotations import Annotations, read_annotations, write_annotations
from .audio import load_audio, pcm_scale, save_audio, scale_pcm, wav_range
from .dataset import Recording, find_recordings, make_dataset
from .definitions import (
    DefinitionConflictError,
    DefinitionsReport,
    check_definitions,
    read_definitions,
    write_definitions,
)
from .synthetic import make_recordings
from .targets import (
    class_activations,
    make_targets,
    normalize_targets,
    seconds_to_samples,
    single_class_targets,
)

__all__ = [
    "Annotations",
    "DefinitionConflictError",
    "DefinitionsReport",
    "Recording",
    "check_definitions",
    "class_activations",
    "find_recordings",
    "load_audio",
    "make_dataset",
    "make_recordings",
    "make_targets",
    "normalize_targets",
    "pcm_scale",
    "read_annotations",
    "read_definitions",
    "save_audio",
    "scale_pcm",
    "seconds_to_samples",
    "single_class_targets",
    "synthetic",
    "wav_range",
    "write_annotations",
    "write_definitions",
]
