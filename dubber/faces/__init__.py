"""Faces: detection, tracking, shot cuts, landmarks, speaker selection and crops.

Entry points: :func:`dubber.faces.analyze.analyze` (the analysis pass, cached) and
:class:`dubber.faces.select.FaceSelector` (per-chunk faces for the render loop).
"""
import os as _os

# MediaPipe logs through glog/absl; keep its INFO/WARNING chatter off the terminal.
_os.environ.setdefault("GLOG_minloglevel", "2")
