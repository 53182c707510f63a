"""The model stages in the order the render loop runs them."""

from __future__ import annotations

from dubber.chunk import Stage
from dubber.stages.crop import crop_faces
from dubber.stages.decode import decode_faces
from dubber.stages.encode import encode_faces
from dubber.stages.generate import generate_faces
from dubber.stages.paste import paste_faces
from dubber.stages.restore import restore_faces

# crop -> encode face and pose -> generate per frame -> decode -> GPEN (if enabled) -> paste.
MODEL_STAGES: tuple[Stage, ...] = (crop_faces, encode_faces, generate_faces, decode_faces,
                                   restore_faces, paste_faces)

