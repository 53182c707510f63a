"""The audio-visual sync model on face-mesh lips: features, model, scoring, speaker choice,
`dub check-sync`."""
