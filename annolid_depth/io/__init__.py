"""Everything that touches files: decoding the video, writing the outputs."""
