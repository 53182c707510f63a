"""The model stages in the order the render loop runs them, between decode and encode."""

from __future__ import annotations

from dubber.stages.crop import crop_faces
from dubber.stages.decode import decode_faces
from dubber.stages.encode import encode_faces
from dubber.stages.generate import generate_faces
from dubber.stages.paste_box import paste_faces_box
from dubber.stages.restore import restore_faces

# crop -> encode face and pose -> generate per frame -> decode -> GPEN (if enabled) -> paste.
# paste_faces_box is the stand-in paste-back; replace it when the paste-back stage lands.
MODEL_STAGES = (crop_faces, encode_faces, generate_faces, decode_faces, restore_faces,
                paste_faces_box)


def run_model_stages(chunk, models, cfg):
    """Run :data:`MODEL_STAGES` over ``chunk``; returns the chunk (frames changed in place)."""
    for stage in MODEL_STAGES:
        chunk = stage(chunk, models, cfg)
    return chunk
