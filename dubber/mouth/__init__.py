"""The mouth: speech -> mouth track (driver), per-actor calibration, the mouth bank.

The contract between the driver, the renderer, the generator and the sync model is the
:class:`~dubber.mouth.track.MouthTrack` (per video frame: viseme, opening, width, rounding,
speech flag, confidence), in the units of :func:`~dubber.mouth.params.mouth_params`.
"""
