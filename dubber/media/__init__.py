"""Media in and out: probe, chunked decode, audio, mel, timeline, encode and mux."""
